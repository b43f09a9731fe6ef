"""`recsys serve`: the HTTP face over the library API (FastAPI + uvicorn, the optional `serve` extra).

    registry.py   runs loaded once, reloaded beside the old ones and swapped atomically; the LRU cache
    app.py        the FastAPI app: parse the request, one call into `recsys_cli.api`, emit JSON
    schemas.py    request bodies (with the examples shown at /docs)
    middleware.py API key, body/query limits, one JSON log line per request, Prometheus timings
    metrics.py    the Prometheus collectors (a registry per app)

Nothing in the core imports this package; it imports only `recsys_cli.api` and `recsys_cli.errors`.
"""
