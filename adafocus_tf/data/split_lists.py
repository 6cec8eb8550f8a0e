"""Split lists and class index files of the datasets ``prepare`` reads.

Formats (one video per line; blank lines and lines starting with ``#`` are
ignored; line numbers are 1-based physical lines of the file, ended by
``\n``, ``\r\n`` or ``\r``; files are UTF-8):

  minik,         ``path num_frames label``          space-separated; the path
  kinetics                                          may contain spaces (the
                                                    last two fields are the
                                                    numbers)
  sthv1, sthv2   ``folder num_frames label``        space-separated, exactly 3
  actnet         ``path,num_frames,label[,label...]`` comma-separated
  fcvid          ``path,num_frames,label[,label...]`` comma-separated,
                                                    multi-label
  custom         ``path,label``                     CSV with a class *name*;
                                                    an optional ``path,label``
                                                    header row
  jester         ``id;label``                       the official
                                                    ``jester-v1-*.csv``: a
                                                    frame folder id and a
                                                    class *name*; the test
                                                    list (ids only) has no
                                                    labels and is left out

The integer labels of the official lists are 0-based indices into the class
list, whatever the base of the class index file. A class index file
(``*classInd*.txt`` or ``category.txt`` in the lists' directory) holds
one class per line, either ``name`` or ``index name`` (``index,name`` too);
indices may start at 0 or 1 but must then cover every class exactly once.
Kinetics-400's lists are TSM's ``gen_label_kinetics.py`` output
(``train_videofolder.txt``, ``val_videofolder.txt``: a frame folder, its
frame count and the class's line in ``kinetics_label_map.txt``, also
found as a class index file).
Labels are never guessed: a label outside the class list makes its line bad.
Jester's class file (``jester-v1-labels.csv``) holds plain names, and its
classes are numbered in sorted name order, as TSM's label generator (and so
every published Jester model) numbers them, not in the file's order.

A line that cannot be used (a line that is not UTF-8 text included) becomes a
``BadLine`` (with the reason) rather than an exception, so that one bad line
never stops a whole dataset.
"""
from __future__ import annotations

import codecs
import csv
import dataclasses
import fnmatch
import glob
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

SPLIT_NAMES = ("train", "val", "test")
# Class index files are found by these patterns inside --splits
# (category.txt: the Something-Something lists' name).
CLASS_INDEX_GLOBS = ("*classInd*.txt", "category.txt")
# Jester's official class file is jester-v1-labels.csv.
JESTER_CLASS_GLOBS = ("*labels.csv",)
# Kinetics' class file (TSM's tools) is kinetics_label_map.txt.
KINETICS_CLASS_GLOBS = CLASS_INDEX_GLOBS + ("*label_map*.txt",)
_INDEXED_LINE = re.compile(r"^(\d+)\s*[\s,]\s*(\S.*)$")


class ListError(ValueError):
  """A problem that makes a whole list or class file unusable."""


@dataclasses.dataclass(frozen=True)
class ListFormat:
  """How one dataset writes its split lists.

  Attributes:
    name: dataset name (``--dataset``).
    separator: field separator: ``" "`` or ``","`` with numbered labels,
      ``","`` (CSV) or ``";"`` with ``named_labels``.
    spaces_in_path: a space-separated path may itself hold spaces (the last
      two fields are num_frames and label).
    max_labels: labels a line may carry (0: any number).
    named_labels: the label is a class name (``custom``, ``jester``) and
      there is no num_frames field.
    multi_label: the dataset is multi-label (recorded in meta.json).
    list_extensions: file extensions of split lists found by name.
    header: a first line ``path<separator>label`` is a header, not a video.
    path_field: what the first field is called in messages.
    class_index_globs: names of the class index file in ``--splits``.
    plain_class_names: every line of the class index file is a name (never
      ``index name``), so a name that starts with digits stays whole.
    sorted_classes: classes are numbered in sorted name order, whatever
      the order of the class index file.
    unlabelled_splits: splits whose official list carries no labels; found
      by name, such a list is left out (named with ``--lists``, its lines
      are bad).
  """
  name: str
  separator: str
  spaces_in_path: bool = False
  max_labels: int = 1
  named_labels: bool = False
  multi_label: bool = False
  list_extensions: Tuple[str, ...] = (".txt",)
  header: bool = False
  path_field: str = "path"
  class_index_globs: Tuple[str, ...] = CLASS_INDEX_GLOBS
  plain_class_names: bool = False
  sorted_classes: bool = False
  unlabelled_splits: Tuple[str, ...] = ()

  @property
  def syntax(self) -> str:
    """The line syntax, for messages."""
    if self.named_labels:
      return f"{self.path_field}{self.separator}label"
    if self.separator == ",":
      return "path,num_frames,label[,label...]"
    return "path num_frames label"


FORMATS: Dict[str, ListFormat] = {
    "minik": ListFormat("minik", " ", spaces_in_path=True),
    "kinetics": ListFormat("kinetics", " ", spaces_in_path=True,
                           class_index_globs=KINETICS_CLASS_GLOBS),
    "sthv1": ListFormat("sthv1", " "),
    "sthv2": ListFormat("sthv2", " "),
    # ActivityNet lists may carry several labels; evaluation uses the first.
    "actnet": ListFormat("actnet", ",", max_labels=0),
    "fcvid": ListFormat("fcvid", ",", max_labels=0, multi_label=True),
    "custom": ListFormat("custom", ",", named_labels=True,
                         list_extensions=(".csv", ".txt"), header=True),
    # The official 20BN lists: jester-v1-{train,validation,test}.csv with
    # jester-v1-labels.csv; frame folders <id>/00001.jpg...
    "jester": ListFormat("jester", ";", named_labels=True,
                         list_extensions=(".csv",), path_field="id",
                         class_index_globs=JESTER_CLASS_GLOBS,
                         plain_class_names=True, sorted_classes=True,
                         unlabelled_splits=("test",)),
}


@dataclasses.dataclass(frozen=True)
class Entry:
  """One usable line of a split list.

  Attributes:
    list_file: the list it came from.
    line: 1-based line number in that file.
    path: the video file or frame folder as written in the list.
    num_frames: the listed frame count (None for ``custom`` and ``jester``
      lists: every frame of the folder or video is read).
    labels: class indices, in list order, without repeats.
  """
  list_file: str
  line: int
  path: str
  num_frames: Optional[int]
  labels: Tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class BadLine:
  """A line of a split list that cannot become a video.

  Attributes:
    list_file: the list it came from.
    line: 1-based line number.
    text: the line as written (stripped).
    reason: why it was rejected.
  """
  list_file: str
  line: int
  text: str
  reason: str


Item = Union[Entry, BadLine]


def _read_lines(path: str, what: str) -> List[Tuple[str, Optional[str]]]:
  """(text, problem) of every physical line of a file.

  Lines are decoded one by one, so a byte that is not UTF-8 spoils its own
  line only: ``problem`` then says where it is (and ``text`` shows it as
  U+FFFD); it is None for a good line.

  Raises:
    ListError: the file cannot be read.
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise ListError(f"cannot read {what} {path}: {e}") from None
  # A byte-order mark (spreadsheet exports) is not data.
  if data.startswith(codecs.BOM_UTF8):
    data = data[len(codecs.BOM_UTF8):]
  lines = []
  for raw in data.splitlines():
    try:
      lines.append((raw.decode("utf-8"), None))
    except UnicodeDecodeError as e:
      lines.append((raw.decode("utf-8", errors="replace"),
                    f"not UTF-8 text: byte 0x{raw[e.start]:02x} at position "
                    f"{e.start + 1} of the line (save the file as UTF-8)"))
  return lines


def _content_lines(path: str, what: str):
  """(line number, stripped text, problem) of the non-blank, non-comment
  lines; problem as ``_read_lines`` gives it."""
  for n, (raw, problem) in enumerate(_read_lines(path, what), 1):
    text = raw.strip()
    if text and not text.startswith("#"):
      yield n, text, problem


def parse_class_index(path: str, plain_names: bool = False) -> List[str]:
  """Reads a class index file into the list of class names.

  Args:
    path: the file: one class per line, ``name`` or ``index name``
      (``index,name``), indices 0- or 1-based.
    plain_names: every line is a name, even one that starts with digits.

  Returns:
    Class names; position i is the class of label i.

  Raises:
    ListError: unreadable, a line that is not UTF-8, empty, indices that
      are not a permutation of 0..n-1 or 1..n, a mix of indexed and plain
      lines, or repeated names.
  """
  rows = []
  for n, text, problem in _content_lines(path, "class index file"):
    if problem:
      # A class name with a wrong byte would shift or rename classes.
      raise ListError(f"cannot read class index file {path}: line {n} is "
                      f"{problem}")
    rows.append((n, text))
  if not rows:
    raise ListError(f"class index file {path} lists no classes")
  matches = [(n, None if plain_names else _INDEXED_LINE.match(text), text)
             for n, text in rows]
  indexed = [m for m in matches if m[1]]
  if indexed and len(indexed) != len(rows):
    n, _, text = next(m for m in matches if not m[1])
    raise ListError(
        f"{path}:{n}: {text!r} has no index but other lines are "
        "'index name'; use one form for every line")
  if not indexed:
    names = [text for _, text in rows]
    lines = [n for n, _ in rows]
  else:
    pairs = [(int(m.group(1)), m.group(2).strip(), n) for n, m, _ in indexed]
    base = min(i for i, _, _ in pairs)
    if base not in (0, 1):
      raise ListError(f"{path}: class indices start at {base}; they must "
                      "start at 0 or 1")
    by_index = {}
    for i, name, n in pairs:
      if i in by_index:
        raise ListError(f"{path}:{n}: index {i} repeats line "
                        f"{by_index[i][1]}")
      by_index[i] = (name, n)
    missing = [i for i in range(base, base + len(pairs)) if i not in by_index]
    if missing:
      raise ListError(f"{path}: class indices are not contiguous: index "
                      f"{missing[0]} is missing")
    names = [by_index[i][0] for i in range(base, base + len(pairs))]
    lines = [by_index[i][1] for i in range(base, base + len(pairs))]
  seen = {}
  for name, n in zip(names, lines):
    if name in seen:
      raise ListError(f"{path}:{n}: class {name!r} repeats line {seen[name]}")
    seen[name] = n
  return names


def read_class_names(path: str, fmt: ListFormat) -> List[str]:
  """The class list of a dataset, read from its class index file.

  Args:
    path: the class index file (see ``parse_class_index``).
    fmt: the dataset's list format (plain names? sorted order?).

  Returns:
    Class names; position i is the class of label i.

  Raises:
    ListError: see ``parse_class_index``.
  """
  names = parse_class_index(path, plain_names=fmt.plain_class_names)
  return sorted(names) if fmt.sorted_classes else names


def find_class_index(splits_dir: str,
                     patterns: Sequence[str] = CLASS_INDEX_GLOBS
                     ) -> Optional[str]:
  """The single class index file of ``splits_dir``, or None.

  Args:
    splits_dir: the directory of split lists.
    patterns: the class index file's possible names (the format's
      ``class_index_globs``: ``*classInd*.txt`` or ``category.txt`` for most
      datasets).

  Raises:
    ListError: several class index files (pass ``--class_index``).
  """
  found = sorted({path for pattern in patterns for path in
                  glob.glob(os.path.join(glob.escape(splits_dir), pattern))})
  if len(found) > 1:
    raise ListError(f"several class index files in {splits_dir}: "
                    f"{', '.join(os.path.basename(f) for f in found)}; "
                    "choose one with --class_index")
  return found[0] if found else None


def _is_class_index_name(name: str, patterns: Sequence[str]) -> bool:
  return any(fnmatch.fnmatch(name.lower(), p.lower()) for p in patterns)


def split_of(filename: str) -> Optional[str]:
  """The split a list file name implies (train/val/test), or None.

  Args:
    filename: base name of a list file.

  Raises:
    ListError: the name mentions several splits (e.g. ``trainval.txt``).
  """
  lower = filename.lower()
  hits = [s for s in SPLIT_NAMES if s in lower]
  if len(hits) > 1:
    raise ListError(f"list file {filename!r} names several splits "
                    f"({', '.join(hits)}); pass --lists=SPLIT:FILE,...")
  return hits[0] if hits else None


def find_split_lists(splits_dir: str, fmt: ListFormat) -> Dict[str, str]:
  """Maps split name -> list file for the list files of ``splits_dir``.

  Every file with one of the format's extensions whose name contains train,
  val or test (and is not a class index file) is a list of that split
  (``jester-v1-validation.csv`` is the val list).

  Args:
    splits_dir: the directory of split lists.
    fmt: the dataset's list format (which extensions and class index names
      count).

  Returns:
    ``{split: path}``, in SPLIT_NAMES order.

  Raises:
    ListError: no list found, or two lists for one split.
  """
  found: Dict[str, str] = {}
  for name in sorted(os.listdir(splits_dir)):
    path = os.path.join(splits_dir, name)
    if (not os.path.isfile(path) or
        _is_class_index_name(name, fmt.class_index_globs) or
        not name.lower().endswith(fmt.list_extensions)):
      continue
    split = split_of(name)
    if split is None:
      continue
    if split in found:
      raise ListError(
          f"two {split} lists in {splits_dir}: {os.path.basename(found[split])}"
          f" and {name}; choose with --lists={split}:FILE")
    found[split] = path
  if not found:
    kinds = "/".join(fmt.list_extensions)
    raise ListError(
        f"no split lists in {splits_dir}: expected {kinds} files whose names "
        "contain train, val or test (or pass --lists)")
  return {s: found[s] for s in SPLIT_NAMES if s in found}


def parse_lists_flag(value: str, base_dir: str = "") -> Dict[str, str]:
  """Parses ``--lists=train:FILE,val:FILE``.

  Args:
    value: the flag value.
    base_dir: directory that relative FILEs are relative to (``--splits``);
      empty means the working directory.

  Returns:
    ``{split: path}`` in the order given.

  Raises:
    ListError: an item without ``:``, an empty name, or a repeated split.
  """
  out: Dict[str, str] = {}
  for item in (x.strip() for x in value.split(",")):
    if not item:
      continue
    split, sep, path = item.partition(":")
    if not sep or not split.strip() or not path.strip():
      raise ListError(f"--lists item {item!r}: expected SPLIT:FILE")
    split, path = split.strip(), path.strip()
    if split in out:
      raise ListError(f"--lists names split {split!r} twice")
    out[split] = path if os.path.isabs(path) or not base_dir else \
        os.path.join(base_dir, path)
  if not out:
    raise ListError("--lists is empty")
  return out


def _csv_fields(text: str) -> List[str]:
  return [f.strip() for f in next(csv.reader([text]))]


def _is_header(fields: Sequence[str]) -> bool:
  return [f.lower() for f in fields] == ["path", "label"]


def custom_class_names(list_files: Sequence[str]) -> List[str]:
  """The sorted unique class names of ``custom`` lists (for no class file).

  Args:
    list_files: the CSV lists of every split.

  Returns:
    Sorted class names of the rows that have exactly two fields.
  """
  names = set()
  for path in list_files:
    for _, text, problem in _content_lines(path, "split list"):
      if problem:
        continue  # a bad line of parse_split_list
      fields = _csv_fields(text)
      if len(fields) == 2 and not _is_header(fields) and fields[1]:
        names.add(fields[1])
  return sorted(names)


def _parse_int(text: str, what: str) -> Tuple[Optional[int], str]:
  try:
    value = int(text)
  except ValueError:
    return None, f"{what} {text!r} is not an integer"
  return value, ""


def _parse_official(text: str, fmt: ListFormat,
                    num_classes: int) -> Tuple[Optional[tuple], str]:
  """(path, num_frames, labels) of one official line, or (None, reason)."""
  if fmt.separator == " ":
    fields = text.split()
    if len(fields) < 3 or (len(fields) > 3 and not fmt.spaces_in_path):
      return None, (f"expected 3 space-separated fields '{fmt.syntax}', "
                    f"got {len(fields)}")
    fields = [" ".join(fields[:-2])] + fields[-2:]
  else:
    fields = [f.strip() for f in text.split(",")]
    limit = 2 + fmt.max_labels if fmt.max_labels else None
    if len(fields) < 3 or (limit and len(fields) > limit):
      return None, (f"expected comma-separated fields '{fmt.syntax}', got "
                    f"{len(fields)} field(s)")
  path, frames_text, label_texts = fields[0], fields[1], fields[2:]
  if not path:
    return None, "empty path"
  num_frames, why = _parse_int(frames_text, "num_frames")
  if why or num_frames < 0:
    return None, why or f"num_frames {num_frames} is negative"
  labels = []
  for label_text in label_texts:
    if not label_text:
      return None, "empty label field"
    label, why = _parse_int(label_text, "label")
    if why:
      return None, why
    if not 0 <= label < num_classes:
      return None, (f"label {label} is not in the class list ({num_classes} "
                    f"classes, 0-based labels 0..{num_classes - 1})")
    if label not in labels:
      labels.append(label)
  return (path, num_frames, tuple(labels)), ""


def _named_fields(text: str, fmt: ListFormat) -> List[str]:
  if fmt.separator == ",":
    return _csv_fields(text)
  return [f.strip() for f in text.split(fmt.separator)]


def _parse_named(text: str, fmt: ListFormat, class_ids: Dict[str, int]
                 ) -> Tuple[Optional[tuple], str]:
  """(path, None, labels) of a ``path,class name`` line, or (None, reason)."""
  fields = _named_fields(text, fmt)
  if len(fields) != 2:
    kind = "CSV" if fmt.separator == "," else f"{fmt.separator!r}-separated"
    why = f"expected 2 {kind} fields '{fmt.syntax}', got {len(fields)}"
    if len(fields) == 1 and fmt.unlabelled_splits:
      why += (f" (no label: {fmt.name}'s official "
              f"{'/'.join(fmt.unlabelled_splits)} list has none)")
    return None, why
  path, name = fields
  if not path:
    return None, f"empty {fmt.path_field}"
  if name not in class_ids:
    return None, (f"class {name!r} is not in the class list "
                  f"({len(class_ids)} classes)")
  return (path, None, (class_ids[name],)), ""


def parse_split_list(path: str, fmt: ListFormat,
                     class_names: Sequence[str]) -> List[Item]:
  """Reads one split list.

  Args:
    path: the list file.
    fmt: the dataset's list format.
    class_names: the class list (labels index into it; ``custom`` and
      ``jester`` names must be in it).

  Returns:
    One ``Entry`` or ``BadLine`` per non-blank, non-comment line, in file
    order (a ``custom`` header row is not an item). A path listed twice
    makes the later line bad.

  Raises:
    ListError: the file cannot be read.
  """
  class_ids = {name: i for i, name in enumerate(class_names)}
  items: List[Item] = []
  first_line: Dict[str, int] = {}
  for index, (n, text, problem) in enumerate(_content_lines(path,
                                                            "split list")):
    if problem:
      items.append(BadLine(path, n, text, problem))
      continue
    if fmt.named_labels:
      if fmt.header and index == 0 and _is_header(_named_fields(text, fmt)):
        continue
      parsed, why = _parse_named(text, fmt, class_ids)
    else:
      parsed, why = _parse_official(text, fmt, len(class_names))
    if parsed is not None and parsed[0] in first_line:
      parsed, why = None, (f"{parsed[0]!r} is listed again (first at line "
                           f"{first_line[parsed[0]]})")
    if parsed is None:
      items.append(BadLine(path, n, text, why))
      continue
    first_line[parsed[0]] = n
    items.append(Entry(path, n, *parsed))
  return items
