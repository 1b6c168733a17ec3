"""Delete the benchmark's keys: python clean_redis.py REDIS_URL PREFIX."""

from __future__ import annotations

import sys

import redis


def main(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
