"""The configuration skeleton ``cxloop init`` writes (the shape of ``config/sources.yml``).

Kept as a Python string so that it ships with the package however it is installed."""

TEMPLATE = """\
# cxloop configuration: which systems feed the warehouse, and how.
# Written by `cxloop init`; check it with `cxloop check --config THIS_FILE`, run it with
# `cxloop run --config THIS_FILE`. Every key is optional: a missing key keeps its default.
#
# Credentials never live in this file. Each HTTP source reads them from the environment,
#   CXLOOP_<SOURCE>_BASE_URL and CXLOOP_<SOURCE>_TOKEN  (e.g. CXLOOP_SALESFORCE_TOKEN),
# or, under Airflow, from the connection cx_<source> (host = base URL, password = token).
# The key that pseudonymises e-mail addresses comes from CXLOOP_PII_KEY (keep it stable).

# Which source feeds each domain.
crm: files             # salesforce | hubspot | files   (owners, accounts, contacts, follow-ups)
survey: files          # qualtrics | files              (surveys, invitations, responses)

# Incremental extraction: each entity is read from (its watermark - lookback) up to the run's as_of.
lookback_hours: 24
invitation_lookback_days: 45   # delivery statuses keep changing for weeks after a send

# Non-secret options per source (also CXLOOP_<SOURCE>_OPT_<KEY>, e.g. CXLOOP_FILES_OPT_DROP_DIR).
options:
  salesforce:
    api_version: v60.0
    buying_role_field: Buying_Role__c   # the Contact field holding the buying role
  qualtrics:
    directory_id: POOL_changeme         # the XM Directory pool of your contacts (required)
    nps_question_id: QID1               # the 0-10 likelihood-to-recommend question
    comment_question_id: QID2_TEXT
    relationship_pattern: "(?i)relationship"
  hubspot: {}
  files:
    drop_dir: drop   # the folder of <entity>.csv / .jsonl / .parquet files (docs/file-drops.md);
                     # a relative path is relative to the project folder (CXLOOP_HOME)

# What one source may hand the extraction; a breach rejects the file or response, naming the
# limit. The defaults suit most programmes (docs/file-drops.md, "Limits").
limits:
  response_bytes: 268435456        # 256 MiB: one HTTP response body
  uncompressed_bytes: 4294967296   # 4 GiB: one export member inflated / one Parquet file uncompressed
  compression_ratio: 200
  file_rows: 1000000               # records of one drop file
  field_chars: 8388608             # characters of one value
  line_bytes: 33554432             # one physical line of a CSV / JSONL file
  file_bytes: 2147483648           # 2 GiB: one drop file
  record_bytes: 33554432           # one response of a survey export

# How your values map onto the contract: value maps, job title -> buying-role rules, timestamp
# formats. See the docs (README and docs/) for the keys; `cxloop check` validates them.
# mappings:

# Your programme's settings: period_grain, sla_clock, targets, min_n ... See the docs (README,
# "Program settings") for the keys and their defaults; `cxloop check` validates them.
# program:
"""
