#!/usr/bin/env python3
"""Fails when a code comment cites a design section the repository does not have.

Usage: scripts/check-doc-refs.py [--self-test]

The design lives in ARCHITECTURE.md, whose sections are numbered (`## 6. Invariants`); code cites
them as `ARCHITECTURE.md §6`, and invariants as `§6 invariant 7` / `invariants 1, 2 and 4`.
This check reads every `.rs`, `.sh` and `.py` file under src/, raft/src/, tests/, jepsen/src/ and
scripts/ and reports a citation of a missing section or invariant, and any citation of the old
design notes outside the repository (`DESIGN §N`, `DESIGN.md §N`).
"""
import os
import re
import sys
import tempfile

ROOTS = ["src", "raft/src", "tests", "jepsen/src", "scripts"]
SECTION = re.compile(r"^## (\d+)\. (.*)$", re.M)
INVARIANT = re.compile(r"^(\d+)\. ", re.M)
CITE = re.compile(r"ARCHITECTURE\.md §(\d+)((?: invariants?(?: \d+(?:,| and|,? and)?)+)?)")
OLD = re.compile(r"\bDESIGN(?:\.md)? §\d")


def sections_of(text):
    """{section number: (title, body)}."""
    found = list(SECTION.finditer(text))
    return {
        int(m.group(1)): (m.group(2).strip(), text[m.end(): found[i + 1].start() if i + 1 < len(found) else len(text)])
        for i, m in enumerate(found)
    }


def check(root_dir):
    with open(os.path.join(root_dir, "ARCHITECTURE.md"), encoding="utf-8") as f:
        sections = sections_of(f.read())
    invariants_section = next((n for n, (title, _) in sections.items() if title == "Invariants"), None)
    invariants = {int(m.group(1)) for m in INVARIANT.finditer(sections.get(invariants_section, ("", ""))[1])}
    problems = []
    for root in ROOTS:
        for dirpath, _, names in os.walk(os.path.join(root_dir, root)):
            for name in sorted(names):
                if not name.endswith((".rs", ".sh", ".py")) or name == "check-doc-refs.py":
                    continue
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8", errors="replace") as f:
                    for number, line in enumerate(f, 1):
                        where = f"{os.path.relpath(path, root_dir)}:{number}"
                        if OLD.search(line):
                            problems.append(f"{where}: cites the design notes outside the repository: {line.strip()}")
                        for m in CITE.finditer(line):
                            section = int(m.group(1))
                            if section not in sections:
                                problems.append(f"{where}: ARCHITECTURE.md has no section {section}")
                            elif m.group(2) and section == invariants_section:
                                for n in map(int, re.findall(r"\d+", m.group(2))):
                                    if n not in invariants:
                                        problems.append(f"{where}: ARCHITECTURE.md §{section} has no invariant {n}")
    return problems


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "ARCHITECTURE.md"), "w") as f:
            f.write("# A\n\n## 5. Reads\n\ntext\n\n## 6. Invariants\n\n1. one\n2. two\n\n## 7. More\n")
        os.makedirs(os.path.join(tmp, "src"))
        good = "//! (ARCHITECTURE.md §5; ARCHITECTURE.md §6 invariants 1 and 2)\n"
        with open(os.path.join(tmp, "src", "a.rs"), "w") as f:
            f.write(good)
        assert check(tmp) == [], check(tmp)
        with open(os.path.join(tmp, "src", "a.rs"), "w") as f:
            f.write(good + "// DESIGN §4\n// ARCHITECTURE.md §9\n// ARCHITECTURE.md §6 invariant 3\n")
        problems = check(tmp)
        assert len(problems) == 3, problems
        assert "outside the repository" in problems[0] and "no section 9" in problems[1], problems
        assert "no invariant 3" in problems[2], problems
    print("self-test passed")


def main(argv):
    if argv == ["--self-test"]:
        self_test()
        return 0
    root_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    problems = check(root_dir)
    for p in problems:
        print(p)
    if problems:
        return 1
    print("every design citation points at a section of ARCHITECTURE.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
