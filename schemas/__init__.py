"""The documented contract as JSON Schema 2020-12 files, plus `openapi.yaml`.

Get validators only through `opconform.schemas.loader`.
"""

from opconform.schemas.loader import SCHEMA_NAMES, load, schema_hashes, validator

__all__ = ["SCHEMA_NAMES", "load", "schema_hashes", "validator"]
