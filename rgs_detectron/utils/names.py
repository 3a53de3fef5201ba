"""Shortening long lists of tensor names for error messages and reports."""
import re

__all__ = ["short_list", "group_blocks"]


def short_list(names, limit=30):
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def group_blocks(names, universe):
    """Shorten a name list: ``resN.i.*`` for a whole block of ``universe``, ``module.{a,b}`` else.

    ``prefix.resN.i.*`` blocks are recognised at any depth of the name (``backbone.bottom_up.res2.0.``).
    """
    by_block = {}
    for m in filter(None, (re.match(r"^(.*?res\d\.\d+)\.", n) for n in universe)):
        by_block.setdefault(m.group(1), set()).add(m.string)
    listed, out = set(names), []
    for block, members in sorted(by_block.items()):
        if members <= listed:
            out.append(f"{block}.* (whole block)")
            listed -= members
    by_module = {}
    for n in sorted(listed):
        module, _, leaf = n.rpartition(".")
        by_module.setdefault(module, []).append(leaf)
    for module, leaves in by_module.items():
        if not module:
            out += leaves
        else:
            out.append(f"{module}.{leaves[0]}" if len(leaves) == 1 else f"{module}.{{{','.join(leaves)}}}")
    return out
