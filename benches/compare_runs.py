#!/usr/bin/env python3
# python3 benches/compare_runs.py target/herd-bench/run1.json target/herd-bench/results.json
"""Do two `make bench` runs agree? Reads two results.json files and, per worker count and
workload, compares every pair of servers measured in both: a run *states* a ranking of two
servers when their spreads (min-max over the rounds) do not overlap, which is what the
table's ranking column shows. Prints, for req/s and for server CPU per request:

- contradictions: one run states a > b, the other b > a (the bench would be showing noise);
- rankings stated by both runs (the differences a README may quote), with the ratio of
  the medians (better / worse) in the first and the second run;
- rankings stated by one run only (within the noise: do not quote them).

Exit status 1 when any ranking is contradicted, 0 otherwise.
"""

import json
import sys
from itertools import combinations

FIGURES = [("rps", "req/s", 1), ("cpu_us_per_request", "CPU µs/req", -1)]


def spreads(path):
    """{(workers, workload): {server: {figure: (min, median, max)}}} of the measured cells."""
    with open(path) as f:
        run = json.load(f)
    out = {}
    for c in run["cells"]:
        if c.get("status") != "ok":
            continue
        group = out.setdefault((c["workers"], c["workload"]), {})
        figs = {}
        for key, _, _ in FIGURES:
            values = sorted(r[key] for r in c["rounds"] if r.get(key) is not None)
            if values:
                figs[key] = (values[0], c["median"][key], values[-1])
        group[c["server"]] = figs
    return out


def relation(a, b):
    """">" when spread a lies wholly above b, '<' when below, '≈' when they overlap."""
    if a[0] > b[2]:
        return ">"
    if a[2] < b[0]:
        return "<"
    return "≈"


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: compare_runs.py FIRST.json SECOND.json")
    first, second = spreads(sys.argv[1]), spreads(sys.argv[2])
    contradicted = 0
    for key, label, better in FIGURES:
        both, one, bad = [], [], []
        for group in sorted(set(first) & set(second)):
            g1, g2 = first[group], second[group]
            servers = [s for s in g1 if s in g2 and key in g1[s] and key in g2[s]]
            for a, b in combinations(servers, 2):
                r1 = relation(g1[a][key], g1[b][key])
                r2 = relation(g2[a][key], g2[b][key])
                if r1 == "≈" and r2 == "≈":
                    continue
                # Name the better server first (higher req/s, lower CPU per request).
                r = r1 if r1 != "≈" else r2
                hi, lo = (a, b) if (r == ">") == (better > 0) else (b, a)
                m1 = g1[hi][key][1] / g1[lo][key][1]
                m2 = g2[hi][key][1] / g2[lo][key][1]
                line = f"{group[0]} workers, {group[1]}: {hi} better than {lo} ({m1:.2f}x, {m2:.2f}x)"
                if "≈" in (r1, r2):
                    stated = "first" if r1 != "≈" else "second"
                    one.append(f"{line}, stated by the {stated} run only")
                elif r1 == r2:
                    both.append(line)
                else:
                    bad.append(f"{group[0]} workers, {group[1]}: {a} {r1} {b} in the first run, {r2} in the second")
        contradicted += len(bad)
        print(f"## {label}: {len(bad)} contradicted, {len(both)} stated by both runs, {len(one)} by one only")
        for title, lines in [("contradicted", bad), ("stated by both runs", both), ("stated by one run only", one)]:
            if lines:
                print(f"\n{title}:")
                for line in lines:
                    print(f"- {line}")
        print()
    sys.exit(1 if contradicted else 0)


if __name__ == "__main__":
    main()
