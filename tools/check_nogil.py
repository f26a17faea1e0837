"""Check that no line inside a nogil block touches Python (`cython -a` shows it yellow).

Builds the extensions in place with CBACKPROP_CYTHON_ANNOTATE=1, then reads
each module's HTML: every line with a non-zero Python-interaction score that
lies inside `with nogil:` or a `cdef … nogil` function is reported.
Exit status 1 when any is found.

    python tools/check_nogil.py
"""

import glob
import html
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def nogil_lines(source: list[str]) -> set[int]:
    """1-based numbers of the lines inside nogil blocks (headers excluded)."""
    inside, block_indent, in_header = set(), None, False
    for number, line in enumerate(source, start=1):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if block_indent is not None and stripped and indent <= block_indent and not in_header:
            block_indent = None
        if block_indent is not None and not in_header:
            inside.add(number)
            continue
        if stripped.startswith("with nogil"):
            block_indent = indent
        elif stripped.startswith("cdef ") and "(" in stripped:
            in_header, header_indent = True, indent
        if in_header and stripped.endswith(":"):
            in_header = False
            if "nogil" in stripped or "nogil" in line:
                block_indent = header_indent
    return inside


def main() -> int:
    env = dict(os.environ, CBACKPROP_CYTHON_ANNOTATE="1")
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=ROOT, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    failures = 0
    for page in sorted(glob.glob(os.path.join(ROOT, "cbackprop", "_core", "*.html"))):
        pyx = page[:-5] + ".pyx"
        with open(pyx) as f:
            inside = nogil_lines(f.read().splitlines())
        with open(page) as f:
            scores = re.findall(r'<pre class="cython line score-(\d+)"[^>]*>(.*?)</pre>',
                                f.read(), re.S)
        for number, (score, src) in enumerate(scores, start=1):
            if int(score) > 0 and number in inside:
                text = re.sub("<[^>]+>", "", html.unescape(src)).strip()
                print(f"{os.path.relpath(pyx, ROOT)}:{number}: Python interaction: {text}")
                failures += 1
        os.remove(page)
        print(f"{os.path.relpath(pyx, ROOT)}: {len(inside)} lines inside nogil blocks checked")
    print("no Python interaction inside nogil blocks" if not failures
          else f"{failures} lines touch Python inside nogil blocks")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
