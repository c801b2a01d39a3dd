"""Names the torch backend cannot give a scope or a parameter, as data.

A layer's scope becomes a submodule attribute and a parameter an attribute of its scope
(``fc.weight``), so a name that ``nn.Module`` (or the compiled ``GraphModule``) already uses —
``train``, ``eval``, ``forward``, ``to`` — cannot be one. The torch module refuses such names
when it is built (E0902); this table lets ``nndsl check`` refuse them too without importing
torch. tests/test_reserved_names.py checks it against the installed torch.
"""

from __future__ import annotations

from nndsl.errors import LoweringError
from nndsl.ir.graph import Graph

# dir(nn.Module()) without dunder names (torch 2.13)
MODULE_ATTRIBUTES = frozenset((
    "T_destination", "_apply", "_backward_hooks", "_backward_pre_hooks", "_buffers", "_call_impl",
    "_compiled_call_impl", "_forward_hooks", "_forward_hooks_always_called",
    "_forward_hooks_with_kwargs", "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs",
    "_get_backward_hooks", "_get_backward_pre_hooks", "_get_name", "_is_full_backward_hook",
    "_load_from_state_dict", "_load_state_dict_post_hooks", "_load_state_dict_pre_hooks",
    "_maybe_warn_non_full_backward_hook", "_modules", "_named_members",
    "_non_persistent_buffers_set", "_parameters", "_register_load_state_dict_pre_hook",
    "_register_state_dict_hook", "_replicate_for_data_parallel", "_save_to_state_dict",
    "_slow_forward", "_state_dict_hooks", "_state_dict_pre_hooks", "_version",
    "_wrapped_call_impl", "add_module", "apply", "bfloat16", "buffers", "call_super_init",
    "children", "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float",
    "forward", "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "half", "ipu",
    "load_state_dict", "modules", "mtia", "named_buffers", "named_children", "named_modules",
    "named_parameters", "parameters", "register_backward_hook", "register_buffer",
    "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter",
    "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_",
    "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train",
    "training", "type", "xpu", "zero_grad",
))
# what GraphModule sets besides (nndsl/backends/torch/module.py)
GRAPH_MODULE_ATTRIBUTES = MODULE_ATTRIBUTES | frozenset((
    "_aliases", "_inference_only", "_input_dists", "_input_types", "_limits", "_outputs",
    "_param_sites", "_params", "_plan", "_segments", "_symbols", "checkpointing", "device",
    "graph_name", "input_names", "output_names", "recompute",
    "_bind_inputs", "_block_segments", "_build", "_check_input", "_check_param_bytes",
    "_draw_random_inputs", "_init_params", "_make_plan", "_run", "_segment", "_symbol_sites",
    "checkpoint_blocks", "load_weights", "run_all", "_fused", "_onednn", "_plans", "use_onednn",
))


def reserved_part(name: str) -> tuple[str, bool] | None:
    """The part of parameter ``name`` (``stem.train.weight``) torch cannot use, and whether it
    is the leaf (the parameter's own name) rather than a scope; None when all can be used."""
    *path, leaf = name.split(".")
    for i, part in enumerate(path):
        if part in (GRAPH_MODULE_ATTRIBUTES if i == 0 else MODULE_ATTRIBUTES):
            return part, False
    if leaf in (GRAPH_MODULE_ATTRIBUTES if not path else MODULE_ATTRIBUTES):
        return leaf, True
    return None


def check_names(graph: Graph) -> None:
    """Refuse, located, the first parameter whose scope or name torch reserves (E0902)."""
    for node in graph.params():
        bad = reserved_part(node.attr["name"])
        if bad is not None:
            part, leaf = bad
            raise LoweringError(f"the {'name' if leaf else 'scope name'} `{part}` is reserved in "
                                f"PyTorch", span=node.span, code="E0902",
                                hint=f"rename the {'parameter' if leaf else 'layer'} (`as "
                                     f"{part}_`, for example)")
