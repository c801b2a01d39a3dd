"""Write docs/errors.md, the reference of every error code, from the compiler itself.

    python docs/make_errors_doc.py            # (re)write docs/errors.md
    python docs/make_errors_doc.py --check    # exit 1 and print a diff if docs/errors.md is stale
    python docs/make_errors_doc.py --sites    # how many places raise each code, and what they say

What is computed and what is written by hand:

- the codes: every ``E`` code the sources under ``nndsl/`` raise (``code="E...."`` arguments,
  codes passed to error helpers, class defaults of error classes constructed without a code),
  read with ``ast``;
- the examples: the golden error tests (``tests/errors/NAME.nn``, the cases of
  ``tests/test_errors.py``), each run through ``nndsl check`` in-process from the repository
  root to get the message the compiler prints now; a code's example is its shortest golden
  spec, and the others that give the code are listed;
- for a code no golden test gives: the messages of the places that raise it, from the source;
- by hand: one line per code saying what it means and how to fix it, in :data:`DESCRIPTIONS`
  below. ``--check`` also fails when a code has no description or a description names a code
  the sources no longer raise.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import importlib.util
import io
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "docs" / "errors.md"
COMMAND = "python docs/make_errors_doc.py"

# code -> (what it means, how to fix it). One line each; the examples are generated.
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    # files
    "E0001": ("The spec file cannot be read: it is missing, a folder, or not readable.",
              "Check the path (specs live under `specs/<family>/NAME.nn`)."),
    "E0002": ("The file holds NUL bytes: it is binary, not `.nn` text.",
              "Pass the `.nn` spec, not a model file or an image."),
    "E0003": ("The file is not valid UTF-8 (the message gives the byte and the line).",
              "Save the file as UTF-8."),
    "E0004": ("`nndsl run` was given an `.onnx` file that onnx or onnxruntime cannot load.",
              "Re-export it with `nndsl compile --to onnx`."),
    "E0005": ("The spec path is a device, a FIFO or a socket, not a regular file: nndsl does not "
              "read it.", "Pass a `.nn` file."),
    "E0006": ("The spec path does not end in `.nn`.", "Name spec files `NAME.nn`."),
    "E0007": ("A library folder given for imports is missing or not a folder.",
              "Give an existing folder."),
    "E0008": ("The spec file changed between the check that it is a regular file and its "
              "reading (it was replaced or moved while nndsl opened it).",
              "Run the command again once the file stays put."),
    "E0010": ("`--deny-warnings`: the spec compiles, but with warnings.",
              "Fix what the warnings point at, or drop `--deny-warnings`."),
    # syntax
    "E0100": ("A token the grammar does not allow here.",
              "Look at the caret: a missing operator, comma or keyword usually comes just "
              "before it."),
    "E0101": ("An unclosed or mismatched bracket, brace or parenthesis.",
              "Close the bracket the message names."),
    "E0102": ("A string literal runs to the end of its line.",
              "Close the string with `\"` on the same line."),
    "E0103": ("A character that is not part of the language (or a `;`).",
              "Delete it; statements end at the end of a line."),
    "E0104": ("The file is empty, or holds only comments.",
              "Define a model: `model NAME() { input x: f32[N, 4]  output y = x |> linear(2) }`."),
    "E0105": ("The spec ends in the middle of a definition or statement.",
              "Finish the statement or close the open block."),
    # names
    "E0000": ("An internal error of elaboration (a construct it has no rule for).",
              "Report it: it is a bug in nndsl, not in the spec."),
    "E0201": ("A name that is not defined: a variable, layer, op, block or function.",
              "Check the spelling (the hint suggests a close match), or `import std.NAME`."),
    "E0202": ("An attribute a value does not have (`x.shap`, a layer parameter that does not "
              "exist).", "Use one of the attributes the hint lists."),
    "E0203": ("A layer instance's weights are read before the layer is applied.",
              "Apply the layer to an input first, then read `layer.weight`."),
    "E0210": ("An internal error: an operator elaboration does not know.",
              "Report it: it is a bug in nndsl."),
    # arguments
    "E0211": ("Too many or too few arguments, or tensor inputs, for a function, layer or "
              "block.", "Match the signature the message quotes."),
    "E0212": ("An argument of the wrong kind or value for a built-in function or layer (a "
              "string where an int is needed, a float that is not finite, a negative size, a "
              "probability outside [0, 1)).",
              "Give a value of the kind the message asks for (numbers without quotes)."),
    "E0213": ("A keyword argument or `--param` the function, block or model does not have.",
              "Use one of the parameters the hint lists."),
    "E0214": ("A parameter declared with a type the language does not have.",
              "Types: `int float bool str dim list tuple dtype any`."),
    "E0215": ("Unpacking a value into the wrong number of names (`a, b = ...`, `for (a, b) in`).",
              "Match the number of names to the tuple's length."),
    "E0216": ("A compile-time condition (`if`, `assert`) that is not a boolean, or depends on a "
              "symbolic dim or a tensor.", "Compare numbers or static dims; use `where` for "
              "tensors; an `assert` can constrain a symbolic dim."),
    "E0217": ("An unknown dtype name.", "Dtypes: `f32 f16 bf16 f64 i64 i32 i8 u8 bool`."),
    "E0218": ("A `param` initializer the language does not have.",
              "Use `zeros ones normal uniform constant trunc_normal`."),
    "E0219": ("Division by zero in compile-time arithmetic.", "Fix the divisor."),
    "E0220": ("A list index out of range at compile time.", "Index within the list's length."),
    "E0221": ("Calling something that is not a function, layer or block.",
              "Call a layer, block or function; a tensor is applied with `|>` into a layer."),
    "E0222": ("A keyword argument given twice, both by position and by keyword, or given to "
              "something that takes none.", "Give each argument once."),
    "E0223": ("A bad size for example or random inputs: a batch, a `--dim` size or a sample "
              "count (`-n`) that is not a positive int.",
              "Give positive ints: `--batch 2`, `--dim T=16`."),
    "E0224": ("Sizes given for symbolic dims break the spec's `assert` constraints.",
              "Pick sizes that satisfy the asserts the message lists."),
    "E0225": ("An unknown optimization level.", "Use `O0`, `O1` or `O2`."),
    "E0226": ("Counting the elements of a parameter whose shape is symbolic.",
              "Give parameters static shapes."),
    "E0227": ("A malformed `--param NAME=VALUE` or `--dim NAME=INT` option.",
              "Write `--param classes=10`, `--dim T=128`."),
    "E0228": ("An unknown `nndsl compile --to` target.", "Use `--to torch` or `--to onnx`."),
    "E0229": ("An unknown `nndsl graph` format, or one the output name does not tell.",
              "Use `--format dot|svg|html` or an `-o` ending in `.dot`, `.svg` or `.html`."),
    "E0230": ("`scan`'s step is not a block (a layer, a tensor, a model).",
              "Pass a block: `scan(cell, over=xs, init=h0)`."),
    "E0231": ("`scan`'s step has inputs that neither the sequences nor the state fill.",
              "Give the step as many inputs as `over` and `init` provide."),
    "E0232": ("`scan`'s step returns the wrong number or kind of values for its state.",
              "Return the new state (and the per-step outputs) as the message describes."),
    "E0233": ("`scan` without sequences or steps, or a `steps`/`over`/`init` of the wrong kind.",
              "Give `over=xs` or `steps=n` (a positive int or a dim)."),
    "E0234": ("A mistake in an `optimize` section: an unknown entry, one set twice, a value of "
              "the wrong kind.", "Use the entries and values the hint lists."),
    "E0235": ("`--qat` combined with a quantization it has no training form for.",
              "Train with `--qat int8|int4`, then quantize the trained weights."),
    "E0236": ("int8-static quantization found a value with no calibration range.",
              "Calibrate on data that reaches the whole graph."),
    "E0237": ("A bad calibration option: an unknown observer, no calibration data, a bad "
              "sample count.", "For int8-static give `--calibrate NAME|PATH`; observers: "
              "minmax, moving_average, percentile."),
    "E0238": ("A quantization scheme finds nothing to quantize in the model.",
              "Quantize a model with linear or conv layers, or pick another scheme."),
    "E0239": ("A pruning option finds nothing to prune.",
              "Prune a model with weights the option applies to."),
    "E0251": ("`--group` (quantization group size) that does not divide the width of some "
              "layers.", "Pick a group size that divides the widths the message lists."),
    "E0252": ("A size given (`--dim`, `dims=`) for a symbolic dim the model does not have.",
              "Use one of the model's symbolic dims, which the hint lists."),
    "E0253": ("An id range bound in an exported model's metadata that cannot be evaluated: it "
              "names an unknown dim or is not `+ - * //` arithmetic.",
              "Re-export the model with `nndsl compile --to onnx`."),
    "E0254": ("A bad quantization option: an unknown scheme, `--group` without int8-weight or "
              "int4-weight, a group that is not an even int of at least 2.",
              "Use a scheme the hint lists; `--group 64` with `--quantize int4-weight`."),
    "E0255": ("A bad `--prune` option: an unknown kind, a sparsity outside (0, 1), an N:M "
              "pattern without 0 < N < M.", "For example `--prune magnitude=0.5` or "
              "`--prune 2:4`."),
    "E0256": ("A scope named in a compression option (`--keep`, `keep =`, prune scopes) that "
              "the model does not have.", "Use the scope names `nndsl inspect` shows."),
    "E0258": ("A compile-time builtin (`len`, `int`, `float`, `enumerate`, `zip`, `reversed`, "
              "`floor`, `ceil`, `round`) given a value it does not take: `len` of a number, "
              "`int` of a string, `zip` of a tensor, `floor(inf)`.",
              "Give `len`, `enumerate`, `zip` and `reversed` lists; `int`, `float`, `floor`, "
              "`ceil` and `round` finite numbers."),
    "E0259": ("A block or model parameter given a value of another type than it declares "
              "(`classes: int` given a string).",
              "Give the parameter a value of its declared type (numbers without quotes)."),
    "E0260": ("A block's tensor input (`input x: ...`) given something that is not a tensor.",
              "Pass a tensor for the input; numbers and other options go to the block's "
              "parameters."),
    "E0261": ("A layer instance, which has its options already, called with options, "
              "non-tensors or nothing.", "Apply it to its input tensors only: `x |> fc` or "
              "`fc(x)`; to change options, create another layer."),
    "E0262": ("A `param` initializer argument that is not a number (`normal(\"0.02\")`).",
              "Give the initializer numbers: `normal(0.02)`, `uniform(-0.1, 0.1)`."),
    "E0263": ("A positional argument after a keyword argument in a call.",
              "Put the positional arguments first, or give that one by name too."),
    "E0264": ("A pass name that is unknown (`--disable-pass`, `--stop-after`), not in the "
              "level's pipeline (`--stop-after`), or did not run (`nndsl inspect --explain`).",
              "`nndsl passes` lists every pass and the levels that run it."),
    "E0265": ("`nndsl.compile` was given its spec or options as values of the wrong type (a "
              "spec as both a path and text, `path=` that is not a path, `limits=` that is not "
              "a `Limits`).", "Pass one of `nndsl.compile(\"net.nn\")`, `path=` or "
              "`source=`, and options of the types documented."),
    "E0257": ("An ONNX export's int8 form (`--onnx-int8`, `to_onnx(int8=...)`) that is not "
              "one of `u8u8` and `u8s8`, or `--onnx-int8` without `--to onnx`.",
              "Use `u8u8` (exact on every CPU) or `u8s8`, with `--to onnx`."),
    # values of the wrong kind (not arguments)
    "E0240": ("An operator applied to values it is not defined on: arithmetic or comparison "
              "of a string, list or layer, `@` without two tensors, a symbolic dim or NaN "
              "combined with a tensor.", "Combine tensors with tensors or numbers; make a "
              "tensor of a dim with `full` or `arange`."),
    "E0241": ("Arithmetic on a symbolic dim whose result is not a dim: `/`, `**`, or `//` and "
              "`%` by something other than an int.", "Use `//` and `%` by an int; fix the dim "
              "in the input type if you need other arithmetic."),
    "E0242": ("A subscript of the wrong kind: indexing a value that is not a list or tensor, "
              "a list index or slice bound that is not an int, a tensor index that is not an "
              "int, slice, `...`, `none` or i64 tensor, a slice outside `[...]`.",
              "Index lists with ints and tensors with ints, slices, `...`, `none` or i64 ids."),
    "E0243": ("More than one `...` in one index or one shape pattern.",
              "Write `...` once; spell the other dims out."),
    "E0244": ("`for` over something that is not a list, a tuple or `range(...)`, or `repeat` "
              "with a count that is not a non-negative int.",
              "Loop over `range(n)` or a list; give `repeat` a compile-time int."),
    "E0245": ("`range(...)` of something other than 1 to 3 compile-time ints (a symbolic dim, "
              "a float, a tensor).", "Give `range` ints; to step through a sequence of "
              "symbolic length use `scan`."),
    "E0246": ("A name (`as NAME`) put where it cannot go: on a layer instance being applied, on "
              "a function without weights, on a value that is not a layer or block call.",
              "Name a layer where it is created: `fc = linear(10) as head`."),
    "E0247": ("A layer option outside the values it takes: gelu `approximate`, rnn "
              "`nonlinearity`, an embedding `padding_idx` that is not a row of the table.",
              "Use one of the values the message lists."),
    "E0248": ("A model output that is not a tensor (a number, a list, a layer).",
              "Output a tensor: apply the layer to an input."),
    "E0249": ("A dim in an input type or `param` shape that is not an int or a symbol (a "
              "float, a string), or a `param` dim that is not a positive int.",
              "Write dims as ints or names: `f32[N, 4]`."),
    "E0250": ("Tensor indices that cannot be combined in one subscript: two i64 tensors, or "
              "an i64 tensor with an int.", "Index in two steps (`x[:, 0][ids]`), or use "
              "`gather` for an index per element."),
    # shapes
    "E0302": ("A dim or axis out of range for the tensor's rank (split, chunk, softmax, "
              "flatten, transpose...), or more indices than the tensor has dims.",
              "Use a dim within the rank the message shows (negative dims count from the end)."),
    "E0303": ("Shapes that do not broadcast (arithmetic, masks, expand).",
              "Make the dims equal or 1; `unsqueeze` or `reshape` first."),
    "E0304": ("A tensor of a dtype the op does not take: an integer where a float is needed "
              "(mean, softmax), a float where ids are needed (embedding, gather, index), a "
              "non-bool mask, a bool where a number is needed.",
              "`cast` to the dtype the op needs."),
    "E0305": ("Matrix-product shapes that do not fit (`@`, matmul, attention).",
              "The inner dims must agree: `[.., n, k] @ [.., k, m]`."),
    "E0306": ("A linear layer's input features do not match its weight.",
              "The input's last dim must equal the layer's in_features."),
    "E0307": ("A convolution or pooling window that gives no output: an output that would be "
              "empty, a padding too large, a kernel, stride or dilation that is not positive.",
              "Use a positive kernel and stride, a smaller kernel or stride, more padding, or "
              "a larger input."),
    "E0308": ("A convolution or pooling input of the wrong rank, or with channels the layer's "
              "weight does not take.", "Give `[N, C, H, W]` (`[N, C, L]` in 1-d) with the "
              "channels the layer expects."),
    "E0309": ("A normalization input of the wrong shape or channel count (batch_norm, "
              "layer_norm, group_norm, rms_norm).", "Normalize over dims the input has."),
    "E0310": ("A recurrent layer's input is not `[N, T, features]`, or its features do not "
              "match.", "Give a batch-first `[N, T, F]` input."),
    "E0311": ("A reshape whose element count does not match, or with more than one `-1`.",
              "The product of the new dims must equal the input's."),
    "E0312": ("Split, chunk or concat sizes that do not add up or fit.",
              "Split into parts that sum to the dim's size; concat tensors that agree "
              "outside the dim."),
    "E0313": ("A slice step that is not allowed: not a positive int on a tensor, zero on a "
              "list.", "Use a positive step on tensors; a non-zero step on lists."),
    "E0314": ("An op that needs a static size got a symbolic dim.",
              "Fix that dim in the input type, or assert its size."),
    "E0315": ("A dim or parameter shape that is not positive.", "Use positive sizes."),
    "E0316": ("A block's input does not match its declared type (dtype, rank or dims).",
              "Pass a tensor of the dtype, rank and dims the block's `input` declares."),
    "E0317": ("An index or slice out of range for a static dim.",
              "Index within the dim's size."),
    "E0318": ("A shared layer instance applied to inputs of different shapes.",
              "Apply one instance to inputs of one shape, or make a second instance."),
    "E0319": ("`scan`'s sequences, steps or per-step outputs do not fit together.",
              "Step through sequences of one length along one dim."),
    "E0320": ("Index ops (gather, index_select, scatter_add, segment ops) with indices of the "
              "wrong rank or shape.", "Give the index the shape the op documents."),
    "E0321": ("A malformed einsum equation, or operands that do not fit it.",
              "One letter per dim, one term per operand, `->` before the output."),
    "E0322": ("A bad `pad`: an unknown mode, widths that are not pairs, too many dims for the "
              "mode.", "Widths are (before, after) pairs, last dim first."),
    "E0323": ("A bad `upsample` or `pixel_shuffle`: mode, factors or input rank.",
              "Use the modes and ranks the message lists."),
    "E0324": ("A bad range or count: clamp without bounds or min > max, topk k larger than "
              "the dim.", "Give bounds in order, k within the dim."),
    "E0325": ("Tensors of different dtypes where the op needs one dtype (arithmetic, concat, "
              "stack, einsum, scatter_add, an input and a layer's weight).",
              "`cast` one of them so the dtypes agree."),
    "E0326": ("A quantized op (made by the quantization passes) with operands of the wrong "
              "dtype or shape (weights not i8/i4, scales not f32 or not fitting the weight, "
              "activations not u8, a group that does not divide the rows).",
              "Report it: the passes build these ops, a spec cannot."),
    "E0327": ("Convolution groups that do not divide the input and output channels.",
              "Pick `groups` dividing both channel counts."),
    "E0328": ("`padding=\"same\"` with a stride other than 1.",
              "Use `stride=1`, or give the padding as numbers."),
    "E0329": ("A kernel, stride, padding or dilation list whose length is not the number of "
              "spatial dims.", "Write one int for all spatial dims, or one per dim."),
    "E0330": ("A tensor of too low a rank for the op (tril/triu need 2 dims; argsort, topk, "
              "drop_path... need 1).", "`unsqueeze` or `reshape` the input first."),
    "E0331": ("A list of dims that is not valid for the op: a permutation that repeats or "
              "misses a dim, a dim named twice, flatten's start after its end, shifts and "
              "dims of different lengths.", "Name each dim once, in a valid order."),
    "E0332": ("`squeeze` of a dim whose size is not 1.",
              "Squeeze only dims of size 1; `reshape` or index to drop others."),
    "E0340": ("A boolean mask used as an index.",
              "Use `where(mask, x, 0)` or `masked_fill`."),
    # assertions
    "E0400": ("An `assert` of the spec failed at compile time.",
              "Change the parameters or inputs so the assertion holds."),
    # definitions
    "E0501": ("A name defined twice: a block or model, an output, an output named like an "
              "input.", "Rename one of them."),
    "E0502": ("A layer name used twice in one scope, or a name for both a parameter and "
              "another value.", "Give each layer a name of its own (`as NAME`)."),
    "E0503": ("Files that import each other.", "Move the shared definitions into a third file."),
    "E0504": ("An import that cannot be resolved: a missing file, an unknown `std.NAME`, a "
              "malformed target.", "`import std.NAME` or `import \"path/file.nn\"` relative to "
              "the importing file."),
    "E0505": ("A block that calls itself, directly or through others.",
              "Unroll with a loop instead of recursion."),
    "E0506": ("A block without `return`, or a model without inputs or outputs.",
              "End a block with `return`; give a model `input` and `output` statements."),
    "E0507": ("`return` in a model, or `output` in a block.",
              "Models declare `output NAME = ...`; blocks `return` their result."),
    "E0508": ("A block's `input` inside a loop or branch.",
              "Declare inputs at the top level of the block."),
    "E0509": ("A model input without a full shape.", "Spell every dim: `f32[N, 3, 224, 224]`."),
    "E0510": ("The file defines no model (only blocks).",
              "Add `model NAME() { ... }`; blocks alone cannot be compiled."),
    "E0511": ("The file defines several models and none was picked.",
              "Pick one with `model=NAME` (CLI: `--model`)."),
    "E0512": ("No model of the given name (`--model`, an `optimize NAME` section).",
              "Use one of the models the hint lists."),
    "E0513": ("A random input's distribution that cannot be drawn as written: an unknown "
              "distribution, one of the wrong dtype for the input, a missing, unknown, repeated "
              "or non-constant argument, bounds out of order.", "Use `normal uniform randint "
              "bernoulli` with compile-time numbers, of the input's dtype."),
    "E0514": ("An `optimize` section written twice for one model.",
              "Merge the two sections into one."),
    "E0515": ("A block's `input` declared random (`~ normal()`): only a model's inputs are drawn.",
              "Declare the random input in the model and pass it to the block."),
    "E0520": ("An import that resolves outside the folders imports may read (a `..` path or "
              "a link leading out).", "Keep imported files inside the spec's folder or the "
              "library folders given."),
    # limits
    "E0601": ("A number or size absurdly large: a literal, a dim, a layer argument, a "
              "parameter's element count.", "Use a realistic size (a typo is likely)."),
    "E0602": ("An expression nested more than 200 levels deep.",
              "Split it into several assignments."),
    "E0603": ("A loop, range or list longer than the compile-time limit.",
              "Use fewer iterations; `scan` steps through long sequences without unrolling."),
    "E0604": ("A float argument beyond the f32 range (its magnitude is above 3.4e38).",
              "Use values within f32, or `inf` where an unbounded value is allowed."),
    "E0607": ("The elaborated model grows past the limit on graph nodes (loops and block "
              "applications are expanded when compiling).", "Use fewer or smaller loops; the "
              "hint names the limit's setting."),
    "E0608": ("The model's parameters grow past the limit on their total size.",
              "Check the sizes (a typo is likely); the hint names the limit's setting."),
    "E0606": ("The spec file is larger than the size limit of a spec.",
              "Specs are written by hand and far smaller; the hint names the variable that "
              "raises the limit."),
    "E0616": ("The environment variable that raises the spec size limit "
              "(`NNDSL_MAX_SOURCE_BYTES`) is not a positive number of bytes.",
              "Set it to a number of bytes, or unset it for the default."),
    "E0605": ("The spec is nested too deeply for the compiler's recursion (command line only).",
              "Split deep expressions into several assignments."),
    "E0613": ("Imports nested more than 64 files deep (a file importing a file importing ...).",
              "Import the files from one place instead of through a chain."),
    "E0614": ("The program imports too much: more than the limit on imported files, or files "
              "adding up to more than twice the size limit of one spec.",
              "Import fewer files; the hint names the variable that raises the size limit."),
    "E0615": ("Block applications nested more than 64 deep (a block calling a block calling "
              "...).", "Nest blocks less deeply; unroll with a loop."),
    # internal checks
    "E0609": ("An example or random input would take more memory than the limit.",
              "Use a smaller batch or smaller symbolic dims."),
    "E0700": ("The IR failed a verifier invariant after elaboration or a pass.",
              "Report it: it is a bug in nndsl."),
    "E0801": ("An optimization pass crashed.",
              "Report it; meanwhile `--disable-pass NAME` or `-O0` skips the pass."),
    # lowering
    "E0901": ("A parameter initializer the torch backend does not know.",
              "Report it: the elaborator accepted an initializer the backend lacks."),
    "E0902": ("A layer or scope name that PyTorch reserves (`training`, `forward`...).",
              "Rename the layer with `as NAME`."),
    "E0903": ("An op with no torch lowering.", "Report it, or avoid the op."),
    "E0904": ("An ONNX export of a symbolic dim that no input carries.",
              "Make the dim come from an input's shape."),
    "E0905": ("bf16 in an ONNX export.", "Export f32 or f16; run bf16 on the torch backend."),
    "E0906": ("A layer configuration with no ONNX form (an adaptive pool that does not divide, "
              "conv_transpose2d output padding).", "Use sizes ONNX can express."),
    "E0907": ("An op that cannot be lowered to ONNX opset 21.", "Avoid the op for ONNX."),
    "E0908": ("Weights given to the ONNX export miss a parameter or have the wrong shape.",
              "Give weights in the spec's names and shapes."),
    "E0909": ("The weights do not fit in one `.onnx` file (protobuf holds under 2 GiB).",
              "Save them as external data (lower `--external-data-threshold`)."),
    "E0910": ("An op with no form in the generated PyTorch source.",
              "Use `to_torch()` instead of the code generator for this model."),
    "E0911": ("The model cannot be written as PyTorch source.",
              "Use `to_torch()` instead of the code generator for this model."),
    "E0912": ("Weights matched to the spec by name that have no place in the torch module (a "
              "compiler bug: the module would otherwise run on its initial values).",
              "Report it with the spec; compiling at -O1 avoids the passes that derive weights."),
    # weights
    "E1001": ("Weights that do not match the spec: missing, unexpected or wrongly shaped.",
              "Give weights in the spec's names and shapes (the notes list the differences)."),
    "E1002": ("Weights that are not a mapping of names to tensors.",
              "Pass a state dict or a `.safetensors` file."),
    "E1003": ("The weights file does not exist.", "Check the path."),
    "E1004": ("A weights file that is not `.safetensors`.",
              "Save the weights with safetensors."),
    "E1005": ("A `.safetensors` file that cannot be read.", "Re-save the weights."),
    "E1006": ("int8-static cannot quantize a layer: its bias does not fit int32 at the scale "
              "of its products, because its calibrated inputs were nearly zero.",
              "Keep the layer in float with `--keep SCOPE`, or calibrate on data like the "
              "model's real inputs."),
    "E1008": ("A file cannot be written (an output path).",
              "Write to a folder that exists and is writable."),
    # runtime inputs
    "E1101": ("A compiled model called with missing, extra or unknown inputs.",
              "Pass exactly the model's inputs, by name."),
    "E1102": ("A symbolic dim that the inputs give different sizes.",
              "Give inputs that agree on every shared dim."),
    "E1103": ("A runtime input of the wrong dtype, or not a tensor.",
              "Pass tensors of the declared dtype."),
    "E1104": ("A runtime input of the wrong shape.", "Pass tensors of the declared shape."),
    "E1105": ("An input file of `nndsl run --input` does not exist.", "Check the path."),
    "E1106": ("An input file that is not a readable `.npy`/`.npz`, or given the wrong way.",
              "`--input NAME=file.npy`, or one `.npz` holding every input."),
    "E1107": ("onnxruntime failed while running a model.", "The message quotes onnxruntime."),
    "E1108": ("Training mode on a module compiled for inference only (O2, quantized).",
              "Compile at O0 or O1 to train."),
    "E1109": ("int8 kernels moved off the CPU.", "Keep int8 models on the CPU."),
    "E1110": ("Runtime inputs whose sizes break the spec's `assert` on symbolic dims.",
              "Give inputs whose sizes satisfy the assert the message quotes."),
    "E1111": ("An id input holds a value outside its valid range (`[0, V)`).",
              "Pass ids within the range the message gives."),
    # train sections
    "E1201": ("An unknown entry in a `train` section.", "Use the entries the hint lists."),
    "E1202": ("An unknown optimizer.", "Use one the hint lists (sgd, adam, adamw, ...)."),
    "E1203": ("A loss with no loss function in it, or an unknown loss function.",
              "Use a loss function the hint lists."),
    "E1204": ("An unknown learning-rate schedule.", "Use one the hint lists."),
    "E1205": ("An unknown metric.", "Use one the hint lists."),
    "E1206": ("An unknown built-in data set.", "Use one the hint lists, or a data path."),
    "E1207": ("Loss operands of the wrong shape or kind for the loss function.",
              "Give the loss the prediction and target shapes it expects."),
    "E1208": ("A loss expression the interpreter does not take (unknown names, operators).",
              "A loss is numbers, `+ - * /` and loss functions of outputs and targets."),
    "E1209": ("A `train` section for a model that is not defined (or is a block).",
              "Name a model of the file or of its imports."),
    "E1210": ("A value of the wrong form for a train entry or a `nndsl train` option.",
              "Write a name or a call as the hint shows; give positive numbers."),
    "E1211": ("A keyword argument of a train choice of the wrong kind or range.",
              "Give values of the kind the message asks for."),
    "E1212": ("A train entry or section given twice.", "Merge them into one."),
    "E1213": ("A train section without a loss.", "Add e.g. `loss = cross_entropy(logits, label)`."),
    "E1214": ("Data whose shape does not fit the model's inputs.",
              "Match the data's features and classes to the model."),
    "E1215": ("Training data that cannot be read or used: missing, empty, lacking columns.",
              "Check the data path and its columns."),
    "E1216": ("Every parameter is frozen: nothing to train.", "Freeze fewer scopes."),
    "E1217": ("Initial weights for training that cannot be used.",
              "Give weights in the spec's names."),
    "E1218": ("A checkpoint to resume from that is missing, unreadable or incomplete.",
              "Resume a finished run folder, or start a new run."),
    "E1219": ("A metric that does not fit the task of its (prediction, target) pair.",
              "Use a metric of the task (classification, regression)."),
    "E1220": ("Nothing to train on: no train section and no `--data`.",
              "Write a train section, or give `--data`."),
    "E1221": ("A target declared without a shape, or a first dim that is not the batch.",
              "`target label: i64[N]`."),
    "E1222": ("`--ddp`/`--fsdp` outside torchrun.", "Launch with `torchrun`."),
    "E1223": ("`--device cuda` with no CUDA device.", "Train on the CPU, or on a machine with "
              "a GPU."),
    "E1224": ("A recipe mistake: samples from a recipe that makes none, sample shapes that "
              "are not images, targets a recipe does not use.",
              "Use the recipe's own outputs."),
    "E1225": ("A distillation teacher that cannot be found or loaded.",
              "Give the teacher's spec and weights."),
    "E1226": ("Data values that training cannot use: NaN, infinite, out of the target type's "
              "range, a class label that is not a whole number.",
              "Fix or drop the sample the message points at."),
    "E1227": ("Training stopped on a failure (the message says what happened and which "
              "checkpoint is kept).", "Fix the cause and continue with `--resume`."),
    "E1228": ("A run folder that cannot be used (it is a file, or cannot be made).",
              "Give `--out` a folder path."),
    "E1229": ("Data that would take more memory than the limit.",
              "Use less data, or raise the limit the message names."),
    "E1230": ("A pruning option while training that does not apply.",
              "Prune a trained model instead, or drop the option."),
    "E1231": ("Training options that do not work together on this device (float16 mixed "
              "precision, which needs gradient scaling, with the lookahead or sam optimizers).",
              "Train without --amp, or with another optimizer."),
    "E1232": ("Few-shot `episodes` that do not fit: the model's inputs fit no episode layout, "
              "the episodes need more classes or samples per class than the data holds, or an "
              "entry that does not go with episodes (`batch`, `val_split`, `augment`).",
              "Follow the hint: lower `ways`, `shots` or `queries`, choose `train_classes` and "
              "`test_classes`, or drop the entry."),
    "E1233": ("A `maml` recipe that cannot run: no `episodes`, a model that is not a one-input "
              "classifier, an argument out of range, or nothing left to adapt.",
              "Add `episodes = episodes(...)`, fix the argument, or adapt scopes that train."),
    "E1234": ("A `curriculum` that cannot be used: an unknown score or pacing, a start outside "
              "(0, 1], a score column on a built-in set, or a loss-based score without a "
              "per-sample loss.", "Follow the hint; `column(\"NAME\")` needs your own data "
              "with that column."),
    # drawing
    "E1300": ("Graphviz's `dot` program is missing.",
              "Install Graphviz, or use `--format dot` or `--format html`."),
    "E1301": ("Graphviz's `dot` failed or took too long.",
              "Use `--format dot` or `--format html`."),
    # formatting
    "E1401": ("`nndsl fmt` refused to write: its layout of the spec would not parse to the same "
              "program, or would lose a comment. The file is left as it is.",
              "Report it with the file: it is a bug in the formatter."),
    # architecture search (search spaces, search sections, nndsl search)
    "E1501": ("A `choice()` default with no values, or with more than 1,000.",
              "List the values the parameter may take: `choice(64, 128, 256)`; for many "
              "integers write `range(start, stop)`."),
    "E1502": ("A `choice` whose values are of different kinds (a number and a string), or that "
              "lists a value twice.", "Give every value of one kind (numbers, strings, booleans "
                                      "or lists), each once."),
    "E1503": ("A `choice` value that is not a literal (a name, an expression), or a keyword "
              "argument to `choice` or `range`.", "Write the values themselves: `choice(64, "
                                                  "128)`; spaces are read without running "
                                                  "the spec."),
    "E1504": ("A `range` default of an `int` parameter that holds no value (its stop not above "
              "its start, a step of 0) or whose bounds are not integer literals.",
              "Write `range(start, stop)` with stop above start (stop is excluded)."),
    "E1505": ("`choice(...)` used outside a parameter's default.",
              "Declare the space in the model's parameters and read the parameter in the body."),
    "E1510": ("A `search` section limits a quantity nndsl does not measure.",
              "Limit `params` or `flops`."),
    "E1511": ("A limit whose bound is not a number, or that compares with `==` or `!=`.",
              "Write `params <= 200_000` (or `<`, `>=`, `>`) with a number or arithmetic of "
              "numbers."),
    "E1512": ("A `search` section that names a model the file does not define, or a second "
              "section for one model.", "Name one of the file's models; merge the sections."),
    "E1520": ("An `nndsl search` objective that the train section does not produce (a metric "
              "it does not compute, a split it does not hold out), or no train section to "
              "take the default objective from.", "Use one of the names the hint lists, add the "
                                                  "metric to `metrics`, or `--objective params`."),
    "E1521": ("A malformed `--objective` list: empty, a name twice, more than four.",
              "Give one to four comma-separated names: `--objective val_accuracy,params`."),
    "E1522": ("A bad `--trials` count or an unknown sampler.",
              "Give a whole number of trials from 1 to 100,000; samplers: tpe, random, nsga2, "
              "evolutionary."),
    "E1523": ("The study named by `--study` in the storage was made for another search (another "
              "space, objectives, limits or model).", "Resume it with the same spec and "
                                                      "objectives, or start another study "
                                                      "(`--study NAME`, another `-o`)."),
    "E1524": ("The output folder already holds trial run folders of another search.",
              "Choose another `-o`, or remove the folder."),
    "E1530": ("`nndsl search` on a model that declares no search space.",
              "Give parameters defaults such as `choice(64, 128)` or `range(1, 4)`."),
    "E1531": ("The search space is empty under the search section's limits: no configuration "
              "tried (all of a small space, or the least value of each number of a large one) "
              "keeps them. Nothing is trained.", "Loosen the limits, or let the space reach "
                                                 "smaller configurations."),
    "E1540": ("`nndsl search` needs optuna, which is not installed.",
              'Install it: `pip install "nndsl[search]"`.'),
    "E1541": ("The study storage cannot be opened: a folder given as the SQLite file, a bad "
              "URL, no database server, a missing driver.",
              "Give a SQLite file (`--storage PATH.db`) or a URL optuna accepts."),
    # importing ONNX (nndsl import, nndsl.import_onnx, an .onnx file given to compile)
    "E1601": ("The file given to `nndsl import` is not an ONNX model: missing, not a regular "
              "file, truncated, another kind of file, or with no graph.",
              "Give the `.onnx` file itself; re-export it with `torch.onnx.export` or "
              "`onnx.save` if it is damaged."),
    "E1602": ("`onnx.checker` finds the model invalid (the message quotes it).",
              "Re-export the model; `onnx.checker.check_model(model)` says what is wrong."),
    "E1603": ("A tensor's external data lies outside the model's folder, is missing, not a "
              "regular file, or shorter than the tensor; or a model with external data was "
              "given as bytes.", "Keep the data files next to the model (or below its folder) "
                                 "and import the model by its path."),
    "E1604": ("The model's opset of the default domain is missing, older than 7 or newer than "
              "the installed onnx package defines; or onnx's version converter cannot bring it "
              "to the op table's opset.", "Export with an opset from 7 to the newest onnx "
                                          "defines, or upgrade onnx."),
    "E1605": ("The model uses operators of a custom domain, or defines local functions: nndsl "
              "never loads custom op libraries.", "Export with standard ONNX operators only; "
                                                   "inline local functions "
                                                   "(`onnx.inliner.inline_local_functions`)."),
    "E1606": ("ONNX shape inference fails on the model.",
              "Run `onnx.shape_inference.infer_shapes(model, strict_mode=True)` to see why; "
              "re-export it."),
    "E1610": ("An input or initializer nndsl cannot take: not a tensor, no shape, a sparse "
              "initializer, or an element type nndsl has no dtype for.",
              "Give the inputs tensor types with shapes (a `dim_param` for a size that varies)."),
    "E1611": ("`nndsl import -o` that does not end in `.nn`, or `--weights-out` that does not "
              "end in `.safetensors`.", "Name the spec `OUT.nn` and the weights "
                                        "`W.safetensors`."),
    "E1620": ("Nodes nndsl cannot import: every one is listed at once, by op with its count, "
              "with the reason (an op not in the table, or an attribute or run-time input it "
              "cannot express). Nothing is written.",
              "docs/IMPORT.md lists the ops and what each takes; export without those ops, or "
              "with the values they read known at export time."),
    "E1690": ("The spec written for the model does not compile, or its parameters do not match "
              "the weights: a bug in the importer.", "Report it with the model; nothing was "
                                                     "written."),
    # interpretation and robustness (nndsl explain, nndsl robust, capture=)
    "E1801": ("`nndsl bench --device` names a device this machine does not have (`cuda` "
              "where torch sees no CUDA device) or that nndsl bench does not run on.",
              "Leave out `--device` (the CPU), or run on a machine with an NVIDIA GPU and a "
              "CUDA build of torch."),
    "E1802": ("`nndsl bench --quantize` names a scheme that does not exist.",
              "Comma-separated schemes: int8-dynamic, int8-static, int8-weight, int4-weight, "
              "f16, bf16; or `none`."),
    "E1803": ("`nndsl bench --skip` names no path, or leaves none to time.",
              "Skip by a word of the paths' names (compile, O0, onnxruntime, int8-dynamic, ...); "
              "the hint lists them."),
    "E1804": ("`nndsl bench --rounds` or `--time` outside its range.",
              "Rounds from 1 to 10,000; a time budget in seconds from 0 to 3,600."),
    "E1805": ("No path of `nndsl bench` could run the spec; the message says why for each.",
              "Fix the first reason given (a missing provider, a scheme that does not apply)."),
    "E1806": ("`nndsl run --backend` that cannot run the file: `torch` for an `.onnx` file "
              "(onnxruntime runs those), or an unknown backend.",
              "Leave out `--backend` for an `.onnx` file; for a spec, use torch, onnxruntime or "
              "auto."),
    "E1701": ("A value name that the model does not have: a `capture=` name of the torch "
              "module, a `--layer` of `nndsl explain` (Grad-CAM's conv layer, the layer a "
              "gradient method attributes to, an attention node).",
              "Use a name `nndsl inspect` shows (the scope column); the hint lists the closest."),
    "E1702": ("An unknown `nndsl explain --method` or `nndsl robust --attack`.",
              "Methods: saliency, input_x_gradient, integrated_gradients, grad_cam, occlusion, "
              "lime, kernel_shap, permutation, attention; attacks: fgsm, pgd."),
    "E1703": ("A method that does not fit the model: gradients of integer (token) inputs "
              "without a float layer to attribute to, Grad-CAM without a conv layer or on a "
              "value without positions, attention maps of a model without attention, an "
              "output that is not scores per sample.",
              "Follow the hint: `--layer` an embedding for token inputs, another method, or "
              "another `--output`."),
    "E1704": ("A bad option value for `nndsl explain` or `nndsl robust`: `--eps` outside "
              "(0, 1], a `--target` class the output does not have, an unknown `--output`, "
              "too few samples for permutation importance, `--data` with `--input`.",
              "Give a value in the range the message names."),
    "E1705": ("Nothing to explain, or no labels where they are needed: no `--data` or "
              "`--input`, `--target label` or `nndsl robust` on samples without labels.",
              "Give `--data` with a labelled data set (a built-in set, or a data file with "
              "the train section's targets)."),
}

GENERATED_SHOWN = {   # how a generated golden spec (tests/test_errors.py GENERATED) is shown
    "empty": "an empty file",
    "not_utf8": "a file saved as Latin-1 (`café` in a comment)",
    "binary": "the first bytes of a PNG image",
}


# ---- the codes in the sources ----

@dataclass
class Site:
    where: str        # nndsl/...py:LINE
    message: str      # the message's source text
    how: str = ""     # "code=", "helper", "default of CLASS"


def _error_classes(trees) -> dict[str, str]:
    """Error class name -> its default code, from class bodies ``code = "E...."``."""
    out = {}
    for _, _, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if isinstance(stmt, ast.Assign) and any(
                            isinstance(t, ast.Name) and t.id == "code" for t in stmt.targets) \
                            and isinstance(stmt.value, ast.Constant) and \
                            re.fullmatch(r"E\d{4}", str(stmt.value.value)):
                        out[node.name] = stmt.value.value
    return out


def code_sites() -> dict[str, list[Site]]:
    """Every place under nndsl/ that raises each code."""
    trees = []
    for p in sorted((ROOT / "nndsl").rglob("*.py")):
        src = p.read_text(encoding="utf-8")
        trees.append((p.relative_to(ROOT).as_posix(), src, ast.parse(src)))
    classes = _error_classes(trees)
    sites: dict[str, list[Site]] = defaultdict(list)

    def msg(src, call):
        if not call.args:
            return ""
        text = ast.get_source_segment(src, call.args[0]) or ""
        return re.sub(r"\s+", " ", text)

    for rel, src, tree in trees:
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                        ast.AsyncFunctionDef)) and n.body
                      and isinstance(n.body[0], ast.Expr)
                      and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    id(node) not in docstrings:
                for c in re.findall(r"error\[(E\d{4})\]", node.value):
                    sites[c].append(Site(f"{rel}:{node.lineno}", node.value.split("\n")[0],
                                         "printed"))
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else \
                getattr(node.func, "attr", None)
            kw = next((k for k in node.keywords if k.arg == "code"), None)
            if kw is not None:
                if isinstance(kw.value, ast.Constant) and \
                        re.fullmatch(r"E\d{4}", str(kw.value.value)):
                    sites[kw.value.value].append(Site(f"{rel}:{node.lineno}", msg(src, node),
                                                      "code="))
                continue
            pos = [a.value for a in node.args if isinstance(a, ast.Constant)
                   and isinstance(a.value, str) and re.fullmatch(r"E\d{4}", a.value)]
            if pos:
                sites[pos[0]].append(Site(f"{rel}:{node.lineno}", msg(src, node), "helper"))
            elif name in classes and name != "NndslError" or name == "NndslError" and \
                    node.args:
                sites[classes[name]].append(Site(f"{rel}:{node.lineno}", msg(src, node),
                                                 f"default of {name}"))
    return dict(sites)


# ---- the golden tests ----

@dataclass
class Golden:
    name: str
    command: str
    spec: str | None        # the spec's text as shown, or None
    stderr: str
    code: str | None
    others: list = field(default_factory=list)


def _test_errors():
    spec = importlib.util.spec_from_file_location("nndsl_test_errors",
                                                  ROOT / "tests" / "test_errors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_goldens() -> list[Golden]:
    """Every golden error case of tests/test_errors.py through `nndsl check`, in-process."""
    from nndsl.cli import main
    te = _test_errors()
    te._write_generated()
    out = []
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        for name, where in te.CASES.items():
            if where == te.OK:
                continue
            path = te._spec(name)
            args = ["check", path, *te.ARGS.get(name, [])]
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                main(args)
            text = err.getvalue()
            m = re.match(r"error\[(E\d{4})\]", text)
            out.append(Golden(name, "nndsl " + " ".join(args), _shown_spec(te, name, path),
                              text, m.group(1) if m else None))
    finally:
        os.chdir(old)
    return out


def _shown_spec(te, name: str, path: str) -> str | None:
    if name in GENERATED_SHOWN:
        return None
    p = ROOT / path
    if name in te.NO_SPEC or not p.is_file():
        return None
    data = p.read_bytes()
    text = data.decode("utf-8", "replace")
    if len(text) > 2000:   # generated stress specs: show the start and the end
        text = text[:160] + " ... " + text[-80:]
    return text


# ---- Markdown ----

def _fence(text: str, lang: str = "") -> list[str]:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return [ticks + lang, text.rstrip("\n"), ticks]


def render(sites: dict[str, list[Site]], goldens: list[Golden]) -> str:
    from nndsl.errors import WARNINGS
    codes = sorted(set(sites) | set(DESCRIPTIONS))
    by_code: dict[str, list[Golden]] = defaultdict(list)
    for g in goldens:
        if g.code:
            by_code[g.code].append(g)
    untested = [c for c in codes if c in sites and not by_code.get(c)]
    out = [
        "# Error codes",
        "",
        f"Generated by `{COMMAND}` from the compiler — do not edit by hand; run it again "
        "after changing a message or adding a code (`--check` tells whether this file is up "
        "to date). The examples are the golden error tests of `tests/errors/` "
        "(`tests/test_errors.py`), each run through `nndsl check` to show the message the "
        "compiler prints now; the meaning and the fix of each code are written by hand in "
        "the generator.",
        "",
        "Every user mistake is an `NndslError` with one of these codes; the command line "
        "prints it on stderr and exits 1 (2 for a command-line usage error, 3 for an "
        "internal error, which is a bug in nndsl).",
        "",
        f"**{len(codes)} codes**; {len(codes) - len(untested)} have a golden test. "
        f"Codes no golden test gives yet ({len(untested)}): "
        + ", ".join(f"[{c}](#{c.lower()})" for c in untested) + ".",
        "",
        "| code | meaning |",
        "|---|---|",
    ]
    for c in codes:
        meaning = DESCRIPTIONS.get(c, ("(no description)", ""))[0].replace("|", "\\|")
        out.append(f"| [{c}](#{c.lower()}) | {meaning} |")
    for c in codes:
        meaning, fix = DESCRIPTIONS.get(c, ("(no description)", "(no description)"))
        out += ["", f"## {c}", "", meaning, "", f"**Fix:** {fix}", ""]
        gs = sorted(by_code.get(c, []), key=lambda g: (g.spec is None,
                                                        len(g.spec or ""), g.name))
        if gs:
            g = gs[0]
            if g.spec is not None:
                out += [f"`tests/errors/{g.name}.nn`:", ""] + _fence(g.spec, "nn") + [""]
            elif g.name in GENERATED_SHOWN:
                out += [f"`tests/errors/{g.name}.nn`: {GENERATED_SHOWN[g.name]}.", ""]
            out += [f"`{g.command}`:", ""] + _fence(g.stderr) + [""]
            if len(gs) > 1:
                out += ["Other golden tests with this code: " + ", ".join(
                    f"`{x.name}`" for x in gs[1:]) + ".", ""]
        else:
            msgs = list(dict.fromkeys(s.message for s in sites.get(c, []) if s.message))
            out += ["*No golden test gives this code yet.* The messages it is raised with:", ""]
            out += [f"- `{m[:160]}`" for m in msgs[:6]]
            if len(msgs) > 6:
                out.append(f"- ... and {len(msgs) - 6} more")
            out.append("")
    out += ["## Warnings", "",
            "Warnings do not stop compiling; `--deny-warnings` turns them into E0010.", "",
            "| code | what |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in WARNINGS.items()]
    out.append("")
    return "\n".join(out)


def problems(sites: dict[str, list[Site]], goldens: list[Golden]) -> list[str]:
    """What makes the generated page incomplete: codes without a description, descriptions
    of codes nothing raises, golden tests that print no code."""
    out = [f"{c} is raised ({sites[c][0].where}) but has no description in DESCRIPTIONS"
           for c in sorted(set(sites) - set(DESCRIPTIONS))]
    out += [f"{c} has a description but nothing under nndsl/ raises it"
            for c in sorted(set(DESCRIPTIONS) - set(sites))]
    out += [f"golden test {g.name} printed no error[E....] header" for g in goldens
            if g.code is None]
    return out


def print_sites(sites: dict[str, list[Site]]) -> None:
    for c, ss in sorted(sites.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        print(f"{c}: raised from {len(ss)} place{'s' if len(ss) != 1 else ''}")
        for s in ss:
            print(f"    {s.where}: {s.message[:110]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write docs/errors.md from the compiler.")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 with a diff if docs/errors.md is out of date")
    ap.add_argument("--sites", action="store_true",
                    help="print how many places raise each code and their messages")
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    args = ap.parse_args(argv)
    sites = code_sites()
    if args.sites:
        print_sites(sites)
        return 0
    goldens = run_goldens()
    text = render(sites, goldens)
    bad = problems(sites, goldens)
    for p in bad:
        print(p, file=sys.stderr)
    out: Path = args.output
    rel = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    if args.check:
        old = out.read_text(encoding="utf-8") if out.exists() else ""
        if old == text and not bad:
            print(f"{rel} is up to date", file=sys.stderr)
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            old.splitlines(keepends=True), text.splitlines(keepends=True),
            fromfile=f"{rel} (committed)", tofile=f"{rel} (from the compiler)"))
        print(f"{rel} is out of date: run `{COMMAND}`" if old != text else
              f"{rel}: the generator's DESCRIPTIONS need updating", file=sys.stderr)
        return 1
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {rel}: {len(set(sites) | set(DESCRIPTIONS))} codes", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
