"""retier: move duplicity backup volumes in Azure Blob Storage to colder tiers as each set finishes."""

__version__ = "0.1.0"
