from pipelines import lean_startup  # noqa: F401 (first: it must run before anything imports Apache Beam)
