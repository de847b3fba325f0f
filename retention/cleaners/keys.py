"""Redis keys: one Lua script per ``SCAN`` step in the service's container."""

import time
from datetime import UTC, datetime

from stacks import engine
from stacks.secrets import MissingSecret, environ_for, resolve

from ..models import RetentionPolicy
from .base import KEY_SCAN_COUNT, CleanupError, _stamp

# KEYS none, ARGV: cursor, pattern, count, seconds, act ("1": delete/expire).
_KEYS_SCRIPT = """
local reply = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local limit = tonumber(ARGV[4])
local act = ARGV[5] == '1'
local old, old_bytes, young, young_bytes = 0, 0, 0, 0
local oldest, newest, expiring = -1, -1, 0
for _, key in ipairs(reply[2]) do
  local idle = redis.call('OBJECT', 'IDLETIME', key)
  local size = redis.call('MEMORY', 'USAGE', key) or 0
  if idle > limit then
    old = old + 1
    old_bytes = old_bytes + size
    if oldest < idle then oldest = idle end
    if newest < 0 or newest > idle then newest = idle end
    if act then redis.call('UNLINK', key) end
  else
    young = young + 1
    young_bytes = young_bytes + size
    if act and redis.call('TTL', key) == -1 then
      redis.call('EXPIRE', key, limit - idle)
      expiring = expiring + 1
    end
  end
end
return {reply[1], old, old_bytes, young, young_bytes, oldest, newest, expiring}
"""


def _redis_environ(item):
    policy = RetentionPolicy.objects.filter(service=item.service).first()
    reference = (policy.settings or {}).get("password") if policy else None
    return reference


def _keys_scan(ctx, item, cutoff, *, act):
    container = ctx.container(item.service)
    seconds = max(int((datetime.now(UTC) - cutoff).total_seconds()), 0)
    database = str(item.settings.get("database") or 0)
    environ = {}
    reference = _redis_environ(item)
    if reference:
        try:
            environ["REDISCLI_AUTH"] = resolve(
                reference, environ_for(ctx.environment), what="the Redis password"
            )
        except MissingSecret as exc:
            raise CleanupError(f"The Redis password of {item.service}: {exc}")
    totals = dict.fromkeys(("old", "old_bytes", "young", "young_bytes", "expiring"), 0)
    oldest = newest = -1
    cursor = "0"
    now = time.time()
    while True:
        ctx.check_cancel()
        result = engine.exec_run(
            ctx.client,
            container,
            [
                "redis-cli", "-n", database, "--no-auth-warning", "EVAL",
                _KEYS_SCRIPT, "0", cursor, item.pattern, str(KEY_SCAN_COUNT),
                str(seconds), "1" if act else "0",
            ],
            environment=environ or None,
        )  # fmt: skip
        text = result.stdout.decode("utf-8", "replace").strip()
        if not result.ok or text.startswith(("ERR", "(error)", "NOAUTH", "WRONGPASS")):
            raise CleanupError(
                f"redis-cli in {item.service}: {text or result.stderr_text(300)}"
            )
        values = text.split()
        cursor = values[0]
        old, old_b, young, young_b, max_idle, min_idle, expiring = (
            int(v) for v in values[1:8]
        )
        totals["old"] += old
        totals["old_bytes"] += old_b
        totals["young"] += young
        totals["young_bytes"] += young_b
        totals["expiring"] += expiring
        if max_idle >= 0:
            oldest = max(oldest, max_idle)
            newest = min_idle if newest < 0 else min(newest, min_idle)
        if cursor == "0":
            break
    return totals, (
        _stamp(now - oldest) if oldest >= 0 else None,
        _stamp(now - newest) if newest >= 0 else None,
    )


def measure_keys(ctx, item, cutoff):
    totals, (oldest, newest) = _keys_scan(ctx, item, cutoff, act=False)
    return {
        "matched": totals["old"],
        "matched_bytes": totals["old_bytes"],
        "oldest": oldest,
        "newest": newest,
        "kept": totals["young"],
        "kept_bytes": totals["young_bytes"],
        "bytes_estimated": True,
    }


def remove_keys(ctx, item, cutoff, measured):
    totals, _ = _keys_scan(ctx, item, cutoff, act=True)
    if totals["expiring"]:
        ctx.log.info(
            f"{item.key}: {totals['expiring']} younger key(s) without a TTL now "
            "expire when their days are up"
        )
    return {
        "removed": totals["old"],
        "freed_bytes": totals["old_bytes"],
        "detail": {"expiring": totals["expiring"]},
    }
