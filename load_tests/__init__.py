"""Load tests of the HTTP service: Locust scenarios (``locustfile.py``, request logic in
``scenarios.py``), the concurrency x persons sweep (``sweep.py``), the overload step test
(``overload.py``) and two replicas behind nginx (``scale_out.py``). See docs/load_tests.md."""
