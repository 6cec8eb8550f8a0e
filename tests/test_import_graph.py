"""The package's structure: no import cycle, no family switch outside the
families.

Read from the source (``ast``), not by importing: a module-level import of
one package module by another is an edge; imports inside functions (made
lazily on purpose, e.g. the registry loading the built-in families) are not.
"""
import ast
import os
import re

import helpers

PACKAGE = "adafocus_tf"
ROOT = os.path.join(helpers.REPO, PACKAGE)
# What asks "which family?" (issue 25): only a family's own folder may.
FAMILY_SWITCHES = re.compile(
    r"is_v2\(|is_two_stream\(|variant ==|variant !=|variant in \(|"
    r"hasattr\(model,|hasattr\(self\.model,")


def _modules():
  """{dotted module name: source path} of every package module."""
  out = {}
  for folder, _, names in os.walk(ROOT):
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, helpers.REPO)[:-3].split(os.sep)
        if rel[-1] == "__init__":
          rel = rel[:-1]
        out[".".join(rel)] = path
  return out


def _module_level_imports(path, modules):
  """The package modules a module imports at its top level."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  found = set()
  for node in tree.body:
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    else:
      continue
    found.update(n for n in names if n in modules)
  return found


def _cycle(graph):
  """A cycle of the graph as a list of nodes, or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_no_import_cycle():
  modules = _modules()
  graph = {m: _module_level_imports(p, modules) - {m}
           for m, p in modules.items()}
  # A package's __init__ importing its own modules is not a cycle of
  # theirs: drop the edges from a module to the packages above it.
  for m in graph:
    graph[m] = {n for n in graph[m] if not m.startswith(n + ".")}
  assert len(graph) > 100
  assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_no_family_switch_outside_the_families():
  families = os.path.join(ROOT, "families")
  offenders = []
  for path in _modules().values():
    if path.startswith(families + os.sep):
      continue
    with open(path) as f:
      for number, line in enumerate(f, 1):
        if FAMILY_SWITCHES.search(line.split("#")[0]):
          offenders.append(f"{os.path.relpath(path, helpers.REPO)}:{number}: "
                           f"{line.strip()}")
  assert not offenders, "\n".join(offenders)
