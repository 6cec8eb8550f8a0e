"""The Python snippets of docs/*.md: every import line in them imports."""
import glob
import os
import re

import pytest

import helpers

# A ```python block's body, and an import statement (one line) in it.
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_IMPORT = re.compile(r"^\s*(?:import|from)\s")


def _import_lines():
  """(doc file name, statement) of every import in the docs' snippets."""
  found = []
  for path in sorted(glob.glob(os.path.join(helpers.REPO, "docs", "*.md"))):
    with open(path) as f:
      blocks = _BLOCK.findall(f.read())
    found += [(os.path.basename(path), line.strip())
              for block in blocks for line in block.splitlines()
              if _IMPORT.match(line)]
  return found


def test_the_snippets_of_using_a_run_are_found():
  assert ("USING_A_RUN.md", "from adafocus_tf.inference import predictor "
          "as predictor_lib") in _import_lines()


@pytest.mark.parametrize("doc, statement", _import_lines())
def test_a_doc_snippets_import_runs(doc, statement):
  exec(compile(statement, doc, "exec"), {})  # pylint: disable=exec-used
