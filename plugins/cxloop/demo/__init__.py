"""Demo sources: a synthetic B2B Salesforce + Qualtrics world with known ground truth."""
