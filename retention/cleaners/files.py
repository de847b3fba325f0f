"""Files in a volume: ``find`` in a helper container with the volume mounted."""

from stacks import engine

from .base import DATA, CleanupError, _stamp

# "$1": old|young|delete, "$2": the folder, then find's tests. No user
# string is part of the script itself. GNU find measures and deletes in its
# own walk (-printf, -delete); BusyBox find has neither: each batch of names
# is measured (stat), then removed (rm).
_FILES_SCRIPT = r"""
mode="$1"; base="$2"; shift 2
[ -d "$base" ] || { echo "0 0 -1 -1"; exit 0; }
if [ "$mode" = delete ] && find --version 2>/dev/null | grep -q GNU; then
  find "$base" "$@" -printf '%s\n' -delete |
    awk '{n++; b+=$1} END {printf "%d %d\n", n, b}'
elif [ "$mode" = delete ]; then
  find "$base" "$@" -exec sh -c 'stat -c %s "$@" && rm -f "$@"' sh {} + |
    awk '{n++; b+=$1} END {printf "%d %d\n", n, b}'
elif find --version 2>/dev/null | grep -q GNU; then
  find "$base" "$@" -printf '%T@ %s\n' | awk '
    {t = int($1); n++; b+=$2; if (min == "" || t < min) min = t; if (t > max) max = t}
    END {printf "%d %d %s %s\n", n, b, (min == "" ? -1 : min), (max == "" ? -1 : max)}'
else
  find "$base" "$@" -exec stat -c '%Y %s' {} + | awk '
    {n++; b+=$2; if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1}
    END {printf "%d %d %s %s\n", n, b, (min == "" ? -1 : min), (max == "" ? -1 : max)}'
fi
"""


def _glob_escape(text):
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def find_tests(item, days, *, young=False):
    """Return the folder and find's tests after it: files only, not in the
    folders more specific items take (``! -path``: unlike ``-prune`` it
    holds with ``-delete``, which implies ``-depth``), the name patterns,
    the age."""
    base = f"{DATA}/{item.path}".rstrip("/")
    args = ["-type", "f"]
    for path in item.excludes:
        args += ["!", "-path", f"{_glob_escape(f'{DATA}/{path}')}/*"]
    if item.patterns:
        args.append("(")
        for index, pattern in enumerate(item.patterns):
            if index:
                args.append("-o")
            args += ["-name", pattern]
        args.append(")")
    for pattern in item.exclude_names:
        args += ["!", "-name", pattern]
    minutes = days * 1440
    args += ["!", "-mmin", f"+{minutes}"] if young else ["-mmin", f"+{minutes}"]
    return base, args


def _files_run(ctx, item, mode, *, young=False):
    volume = ctx.volume(item.volume)
    base, args = find_tests(item, item.days, young=young)
    code, output = engine.run_helper(
        ctx.client,
        ["sh", "-c", _FILES_SCRIPT, "retention", mode, base, *args],
        environment=ctx.environment,
        purpose="retention",
        owner=ctx.owner,
        mounts=[
            engine.MountSpec(
                type="volume",
                target=DATA,
                source=volume,
                read_only=not mode.startswith("delete"),
            )
        ],
        timeout=6 * 3600,
    )
    text = output.decode("utf-8", "replace").strip()
    if code != 0:
        raise CleanupError(f"find in volume {volume} exited with {code}: {text[-500:]}")
    return [int(v) for v in text.splitlines()[-1].split()] if text else []


def measure_files(ctx, item, cutoff):
    old = _files_run(ctx, item, "old")
    young = _files_run(ctx, item, "young", young=True)
    return {
        "matched": old[0],
        "matched_bytes": old[1],
        "oldest": _stamp(old[2]),
        "newest": _stamp(old[3]),
        "kept": young[0],
        "kept_bytes": young[1],
    }


def remove_files(ctx, item, cutoff, measured):
    count, size = _files_run(ctx, item, "delete")[:2]
    return {"removed": count, "freed_bytes": size}
