"""Load profiles: each file is a locustfile (`locust -f loadtests/profiles/steady.py`)."""
