#!/usr/bin/env python3
"""A library's three lists of its API agree: the functions its public
headers declare, the names its version script exports, and the symbols
file of its Debian package (every name, and the version node, at the same
node as the script's). dpkg-gensymbols compares the symbols file with the
built library, and packaging_deb the library with the script; this closes
the loop to the headers, without a package build.

Usage: check_exports.py MAP SYMBOLS HEADER...
"""
import re
import sys


def header_functions(path):
    """Names of the functions declared in a C header: at column 0, no
    typedef, the first name followed by '(' before any '{', ';' or '='
    (the declarations keep name and parenthesis on one line)."""
    names = set()
    for line in open(path):
        if not re.match(r"[A-Za-z_]", line) or line.startswith("typedef"):
            continue
        m = re.match(r"[^(;{}=]*?\b([A-Za-z_]\w*)\s*\(", line)
        if m:
            names.add(m.group(1))
    return names


def map_names(path):
    text = re.sub(r"/\*.*?\*/", "", open(path).read(), flags=re.S)
    m = re.search(r"(\w+)\s*\{\s*global\s*:(.*?)(local\s*:|\})", text, re.S)
    if not m:
        sys.exit("%s: no 'NODE { global: ...' block" % path)
    return m.group(1), set(re.findall(r"(\w+)\s*;", m.group(2)))


def symbols_names(path):
    nodes, names = set(), set()
    for line in open(path):
        m = re.match(r" (\w+)@(\w+) \S+$", line.rstrip("\n"))
        if m:
            nodes.add(m.group(2))
            names.add(m.group(1))
    return nodes, names


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    vmap, symbols, headers = argv[1], argv[2], argv[3:]
    declared = set().union(*(header_functions(h) for h in headers))
    header = " ".join(headers)
    node, exported = map_names(vmap)
    sym_nodes, listed = symbols_names(symbols)
    listed.discard(node)  # the version node itself ("NODE@NODE")
    fail = 0
    for what, got in (("%s exports" % vmap, exported), ("%s lists" % symbols, listed)):
        missing, extra = sorted(declared - got), sorted(got - declared)
        if missing or extra:
            fail = 1
            print("%s: not what %s declares; missing %s, not declared %s" % (
                what, header, missing or "none", extra or "none"))
    if sym_nodes != {node}:
        fail = 1
        print("%s: version nodes %s, %s has %s" % (symbols, sorted(sym_nodes), vmap, node))
    print("%d functions in %s; %s" % (len(declared), header, "FAILED" if fail else "all listed"))
    return fail


if __name__ == "__main__":
    sys.exit(main(sys.argv))
