"""The one reader of the yaml files rgs_detectron reads: yacs configs and their ``_BASE_``s,
LazyConfig ``.yaml`` files, and the ``config.yaml`` every run saves.

Detectron2 reads them with ``yaml.unsafe_load`` (LazyConfig always, yacs configs when the safe
loader fails), which runs the Python a ``!!python/...`` tag names. Here a file is plain data:
PyYAML's safe loader builds mappings, lists, strings, numbers, booleans and nulls only, and
three more things are refused, each in one line naming the file (and line):

* a key given twice in one mapping (the safe loader keeps the last one without a word: a
  variant set in a first ``MODEL:`` block was silently dropped);
* a document whose anchors expand to more than ``MAX_NODES`` values ("billion laughs": 813
  bytes of nested aliases took 86 s and 1.7 GB before Detectron2 gave up), counted on the
  parsed nodes before anything is built, so the refusal is immediate;
* a file that is not a mapping of keys (empty, a list, a scalar, a binary file).
"""
import yaml

from ..errors import ConfigError, first_line

__all__ = ["read_yaml", "MAX_NODES"]

# Values a file may expand to: Detectron2's whole default config is about 540, a saved LazyConfig about 400.
MAX_NODES = 100_000


class _PlainLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (``<<`` merges may still override)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice in one mapping; yaml would keep only the last "
                        "one. Merge the two into one.", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def _expanded_size(node, sizes):
    """How many values ``node`` stands for once every alias is expanded (``sizes``: per node, by id)."""
    if id(node) not in sizes:
        sizes[id(node)] = MAX_NODES + 1  # a node met again while it is counted contains itself: endless
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else
                    node.value if isinstance(node, yaml.SequenceNode) else [])
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def read_yaml(path, inherited_by=None):
    """The mapping in the yaml config ``path`` (``inherited_by``: the config whose ``_BASE_`` it is), read as plain
    data (see the module docstring); a ConfigError naming the file otherwise. A missing file: FileNotFoundError."""
    via = f" (inherited by {inherited_by} through _BASE_)" if inherited_by else ""
    try:
        with open(path, encoding="utf-8") as f:
            loader = _PlainLoader(f)
            try:
                node = loader.get_single_node()
                if node is not None and _expanded_size(node, {}) > MAX_NODES:
                    raise yaml.YAMLError(f"its anchors and aliases (&name, *name) expand to more than {MAX_NODES:,} "
                                         "values: refused before building them. Write the values out.")
                data = loader.construct_document(node) if node is not None else None
            finally:
                loader.dispose()
    except yaml.MarkedYAMLError as e:
        problem = str(e.problem)
        if "tag '" in problem:
            tag = problem.split("tag '", 1)[1].split("'", 1)[0].replace("tag:yaml.org,2002:", "!!")
            problem = (f"the yaml tag {tag} is refused: yaml files are read as plain data, and this tag would build "
                       "a Python object (run code). Write the value as a plain number, string or list (a LazyConfig "
                       "that needs Python objects is a .py file).")
        line = f", line {e.problem_mark.line + 1}" if e.problem_mark else ""
        raise ConfigError(f"config file {path}{line}{via}: {problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"config file {path}{via}: not a plain yaml config: {first_line(e)}") from None
    if not isinstance(data, dict):
        held = "nothing" if data is None else f"a value of type {type(data).__name__} ({first_line(repr(data))[:60]})"
        raise ConfigError(f"config file {path}{via} holds {held}, not a mapping of config keys (KEY: value lines)")
    return data
