#!/usr/bin/env python3
"""check_layers.py: runtime/ and gen/ keep their layers (CMakeLists.txt says which).

Run by ctest as test_layers with the library's object files as arguments. Two checks:
  1. every #include "x.h" in a layer's file names a header of that layer or one below it;
  2. among the object files, no file calls a function defined in a higher layer, and the
     calls between files (from nm: undefined symbol here, defined there) have no circle.
Prints each offending include, call or circle and exits 1; 0 when the layering holds."""
import os
import subprocess
import sys

# Lowest first. dmattn.h (the public header) is everyone's; gen/ and numeric/ need nothing else.
LAYERS = ["runtime", "gen", "runtime/numeric", "runtime/core", "runtime/api", "runtime/reference"]
RANK = {"runtime": 0, "gen": 1, "runtime/numeric": 1, "runtime/core": 2, "runtime/api": 3,
        "runtime/reference": 4}


def layer_of(path, root):
    d = os.path.dirname(os.path.relpath(path, root))
    return d if d in RANK else None


def sources(root):
    for top in ("runtime", "gen"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    yield os.path.join(dirpath, f)


def check_includes(root, problems):
    headers = {}
    for p in sources(root):
        if p.endswith(".h"):
            headers[os.path.basename(p)] = p
    for p in sources(root):
        here = layer_of(p, root)
        with open(p, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                line = line.strip()
                if not line.startswith('#include "'):
                    continue
                name = line.split('"')[1]
                target = headers.get(name)
                if target is None:
                    continue  # generated or test-only headers are not layered
                there = layer_of(target, root)
                if RANK[there] > RANK[here]:
                    problems.append(f"{os.path.relpath(p, root)}:{n}: includes {name} from "
                                    f"{there}/, a layer above {here}/")


def check_calls(root, objects, problems):
    defined, wanted = {}, {}
    for o in objects:
        out = subprocess.run(["nm", o], check=True, capture_output=True, text=True).stdout
        name = os.path.basename(o).split(".")[0]
        wanted[name] = set()
        for line in out.splitlines():
            f = line.split()
            if len(f) == 3 and f[1] in "TDBR":
                defined[f[2]] = name
            elif len(f) == 2 and f[0] == "U":
                wanted[name].add(f[1])
    layer = {}
    for p in sources(root):
        if p.endswith(".c"):
            layer[os.path.basename(p)[:-2]] = layer_of(p, root)
    edges = {a: {} for a in wanted}
    for a, syms in wanted.items():
        for s in sorted(syms):
            b = defined.get(s)
            if b and b != a:
                edges[a].setdefault(b, s)
    for a in sorted(edges):
        for b, s in sorted(edges[a].items()):
            if a in layer and b in layer and RANK[layer[b]] > RANK[layer[a]]:
                problems.append(f"{a}.c ({layer[a]}/) calls {s} in {b}.c, a layer above "
                                f"({layer[b]}/)")
    # circles: depth-first search with colours, reporting each back edge's loop once
    colour, stack, seen = {}, [], set()

    def visit(a):
        colour[a] = 1
        stack.append(a)
        for b in sorted(edges.get(a, {})):
            if colour.get(b) == 1:
                loop = stack[stack.index(b):] + [b]
                key = frozenset(loop)
                if key not in seen:
                    seen.add(key)
                    problems.append("circle: " + " -> ".join(f"{x}.c" for x in loop) +
                                    f" ({edges[a][b]})")
            elif colour.get(b) is None:
                visit(b)
        stack.pop()
        colour[a] = 2

    for a in sorted(edges):
        if a not in colour:
            visit(a)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # ctest may hand the object list over as one ';'-joined argument
    objects = [o for a in sys.argv[1:] for o in a.split(";") if o.endswith(".o")]
    problems = []
    check_includes(root, problems)
    if objects:
        check_calls(root, objects, problems)
    for p in problems:
        print(p)
    print(f"check_layers: {len(problems)} problem(s); {len(objects)} object files read")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
