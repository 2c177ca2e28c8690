"""cxloop: the open-source B2B Net Promoter warehouse (extract, validate, load, transform, export).

This package knows nothing of Airflow: the DAGs in ``dags/`` wire its functions into tasks.
"""

__version__ = "0.1.0"
