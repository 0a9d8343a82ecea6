"""The private servers of a local deployment (ops/local_services.py): a real redis-server and a real Postgres
cluster start on free 127.0.0.1 ports, answer a client, and stop without leaving a process or a directory."""
from __future__ import annotations

import psutil
import pytest

from ops.local_services import Postgres, Redis


@pytest.mark.services
@pytest.mark.timeout(600)  # the first run may apt-get install both (debian_services)
def test_redis_and_postgres_start_answer_and_stop_cleanly():
    import psycopg2
    import redis

    servers = [Redis(), Postgres()]
    try:
        broker, db = (s.start() for s in servers)
        client = redis.Redis.from_url(broker.url)
        client.set("llmfa", "ok")
        assert client.get("llmfa") == b"ok"
        client.close()
        with psycopg2.connect(host="127.0.0.1", port=db.port, user="airflow", dbname="airflow") as conn:
            with conn.cursor() as cur:
                cur.execute("select current_database(), current_user")
                assert cur.fetchone() == ("airflow", "airflow")
        conn.close()
        pids = [s.proc.pid for s in servers]
    finally:
        leftovers = [pid for s in servers for pid in s.stop()]
    assert leftovers == []
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not any(s.dir.exists() for s in servers)
