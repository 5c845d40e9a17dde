"""The API's routers, one module per resource, each exposing ``router: APIRouter``.

``create_app`` includes every module named in ``ROUTERS`` (in this order).
"""

ROUTERS: tuple[str, ...] = (
    "auth",
    "hunting",
    "schema",
    "queries",
    "functions",
    "tenant",
    "kusto",
    "detectionrules", "alerts", "incidents",
    "ingest",
)
