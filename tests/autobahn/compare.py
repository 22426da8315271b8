#!/usr/bin/env python3
"""Compare an Autobahn report (index.json) with the checked-in expectations.

    compare.py DIRECTION REPORT_DIR EXPECTED_JSON [--newer-than STAMP] [--update]

EXPECTED_JSON maps direction ("server"/"client") to {case: [behavior, behaviorClose]}.
Exit 1 if a case is missing, or its behavior or close behavior differs from the
expectation (an improvement also fails, so the file is kept exact: rerun with --update).
Exit 1 too if there is no REPORT_DIR/index.json, or, with --newer-than, if it is older
than the file STAMP (run.sh creates one as it starts: an index.json from an earlier run
must not pass for this one).
"""
import json
import os
import sys


def key(case):
    return [int(p) for p in case.split(".")]


def main():
    direction, report_dir, expected_path = sys.argv[1:4]
    options = sys.argv[4:]
    update = "--update" in options
    index = report_dir.rstrip("/") + "/index.json"
    if not os.path.exists(index):
        print(f"autobahn {direction}: no report {index}: this run wrote none", file=sys.stderr)
        return 1
    if "--newer-than" in options:
        stamp = options[options.index("--newer-than") + 1]
        if os.stat(index).st_mtime_ns < os.stat(stamp).st_mtime_ns:
            print(f"autobahn {direction}: {index} is older than this run (left by an earlier "
                  "one): this run wrote no report", file=sys.stderr)
            return 1
    report = json.load(open(index))
    (agent,) = report
    actual = {c: [r["behavior"], r["behaviorClose"]] for c, r in report[agent].items()}
    try:
        expected = json.load(open(expected_path))
    except FileNotFoundError:
        expected = {}
    if update:
        expected[direction] = {c: actual[c] for c in sorted(actual, key=key)}
        with open(expected_path, "w") as f:
            # One case per line, so a diff shows exactly which cases changed.
            blocks = []
            for d in sorted(expected):
                lines = [f"  {json.dumps(c)}: {json.dumps(v)}" for c, v in expected[d].items()]
                blocks.append(f"{json.dumps(d)}: {{\n" + ",\n".join(lines) + "\n}")
            f.write("{\n" + ",\n".join(blocks) + "\n}\n")
        print(f"autobahn {direction}: wrote {len(actual)} expectations to {expected_path}")
        return 0
    want = expected.get(direction, {})
    problems = []
    for case in sorted(set(want) | set(actual), key=key):
        w, a = want.get(case), actual.get(case)
        if w != a:
            problems.append(f"  {case}: expected {w}, got {a}")
    counts = {}
    for b, _ in actual.values():
        counts[b] = counts.get(b, 0) + 1
    summary = " ".join(f"{b}={n}" for b, n in sorted(counts.items()))
    if problems:
        print(f"autobahn {direction}: {len(problems)} case(s) differ from {expected_path} ({summary}):")
        print("\n".join(problems))
        return 1
    print(f"autobahn {direction}: all {len(actual)} cases as expected ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
