"""The train section: grammar, loading, resolution, overrides and located mistakes (the
golden messages are in tests/errors/train_*.err)."""

from __future__ import annotations

import pytest

import nndsl
from nndsl.errors import NndslError, TrainError
from nndsl.syntax import ast, parse
from nndsl.train.config import resolve

MODEL = """
model net(classes: int = 10) {
    input image: f32[N, 1, 8, 8]
    train = image |> flatten     # `train` and `target` stay ordinary names inside a model
    target = train |> linear(classes) as fc
    output logits = target
}
"""


def compile_with(section: str, **kw):
    return nndsl.compile(MODEL + section, **kw)


def test_train_section_parses_to_ast():
    m = parse(MODEL + "train net { target label: i64[N]  loss = cross_entropy(logits, label) }")
    (t,) = m.trains
    assert t.model == "net" and t.targets[0].name == "label"
    assert isinstance(t.entries[0].value, ast.Call)


def test_resolved_configuration_and_defaults():
    c = compile_with("""train net {
        target label: i64[N]
        loss = cross_entropy(logits, label)
        optimizer = lookahead(sam(sgd(lr=0.1, momentum=0.9)), k=4)
        schedule = cosine_restarts(period=2, mult=2)
        metrics = [accuracy, f1(average="micro"), precision(logits, label)]
        monitor = val_f1
    }""")
    cfg = resolve(c, c.train_section, {"lr": 0.5, "epochs": 7, "data": "digits"})
    j = cfg.to_json()
    assert j["optimizer"]["inner"]["inner"]["lr"] == 0.5 and j["optimizer"]["k"] == 4
    assert j["epochs"] == 7 and j["batch"] == 32 and j["val_split"] == 0.1
    assert [m["key"] for m in j["metrics"]] == ["accuracy", "f1", "precision"]
    assert j["metrics"][1]["kwargs"] == {"average": "micro"}
    assert cfg.monitor == "val_f1" and cfg.monitor_mode == "max"
    assert j["data"] == {"name": "digits"}


def test_multi_task_loss_and_class_last_sequences():
    c = nndsl.compile("""
model two() {
    input x: f32[N, T, 8]
    h = x |> linear(16) as trunk |> relu
    output tokens = h |> linear(5) as lm
    output value = h[:, -1] |> linear(1) as reg
}
train two {
    target ids: i64[N, T]
    target y: f32[N, 1]
    loss = cross_entropy(tokens, ids) + 0.5 * huber(value, y, delta=2.0) - 0 / 2
    metrics = [bleu(tokens, ids), mse(value, y)]
}""")
    cfg = resolve(c, c.train_section)
    assert [t.fn for t in cfg.loss_info.terms] == ["cross_entropy", "huber"]
    assert [m.task for m in cfg.metrics] == ["text", "regression"]


@pytest.mark.parametrize("section,message", [
    ('train net { target logits: i64[N]  loss = mse(logits, logits) }',
     "has the name of a model output"),
    ('train net { target label: i64[N]  loss = cross_entropy(logits, label) '
     'monitor = val_auc }', "cannot monitor `val_auc`"),
    ('train net { target label: i64[N]  loss = cross_entropy(logits, label) '
     'augment = [flipp] }', "unknown augmentation `flipp`"),
    ('train net { target label: i64[N]  loss = logits }', "`logits` is a tensor"),
    ('train net { target label: i64[N]  loss = cross_entropy(logits, label, smooth=0.1) }',
     "did you mean `smoothing`"),
    ('train net { target label: i64[N]  loss = cross_entropy(logits) }',
     "takes 2 tensor arguments"),
    ('train net { target label: i64[N]  loss = cross_entropy(logits, label) '
     'optimizer = sgd(lr=-1) }', "`lr` of sgd must be positive"),
    ('train net { target label: i64[N]  loss = cross_entropy(logits, label) '
     'optimizer = sgd(nesterov=true) }', "nesterov needs momentum"),
    ('train net { target label: i64[N]  loss = cross_entropy(logits, label) '
     'val_split = 1.5 }', "`val_split` must be a number"),
    ('train net { target label: i64[4]  loss = cross_entropy(logits, label) }',
     "the first dim of target `label` is the batch"),
    ('train net { target label: i64[N]  loss = cross_entropy(logits, label) '
     'metrics = [ndcg] }', "does not fit a classification task"),
    ('train net { target label: f32[N, 1]  loss = bce(logits, label) }',
     "needs equal shapes, but `logits` is f32[N, 10] and `label` is f32[N, 1]"),
    ('block blk() { input x: f32[N, 4]  return x }\ntrain blk { loss = mean(x) }',
     "which is a block, not a model"),
])
def test_mistakes_are_located_errors(section, message):
    with pytest.raises(NndslError) as e:
        compile_with(section)
    assert message in e.value.message or message in (e.value.hint or ""), e.value.render()
    assert e.value.span is not None


def test_command_line_overrides_are_checked():
    c = compile_with('train net { target label: i64[N]  loss = cross_entropy(logits, label) }')
    with pytest.raises(TrainError, match="unknown data set `wines`") as e:
        resolve(c, c.train_section, {"data": "wines"})
    assert "did you mean `wine`" in e.value.hint
    with pytest.raises(TrainError, match="--epochs must be"):
        resolve(c, c.train_section, {"epochs": 0})
    # a built-in set that does not fit is reported against the model
    with pytest.raises(TrainError, match="`iris` has 4 features"):
        resolve(c, c.train_section, {"data": "iris"})


def test_train_section_in_its_own_file(tmp_path):
    (tmp_path / "m.nn").write_text(MODEL)
    (tmp_path / "t.nn").write_text('import "m.nn"\ntrain net {\n  target label: i64[N]\n'
                                   '  loss = cross_entropy(logits, label)\n  epochs = 3\n}\n')
    c = nndsl.compile(tmp_path / "t.nn")
    assert c.name == "net" and c.train_section.model == "net"
    # the main file's section wins over an imported one
    (tmp_path / "m2.nn").write_text(MODEL + 'train net { target label: i64[N]  '
                                    'loss = cross_entropy(logits, label)  epochs = 9 }')
    (tmp_path / "t2.nn").write_text('import "m2.nn"\ntrain net { target label: i64[N]\n'
                                    '  loss = cross_entropy(logits, label)  epochs = 2 }\n')
    c = nndsl.compile(tmp_path / "t2.nn")
    assert resolve(c, c.train_section).epochs == 2
    c = nndsl.compile(tmp_path / "m2.nn")
    assert resolve(c, c.train_section).epochs == 9


def test_two_sections_for_one_model_in_one_file():
    with pytest.raises(TrainError, match="two train sections") as e:
        compile_with('train net { loss = mean(logits) }\ntrain net { loss = mean(logits) }')
    assert e.value.notes


def test_metric_arguments_are_checked():
    with pytest.raises(TrainError, match="`average` of f1 must be one of") as e:
        compile_with('train net { target label: i64[N]  loss = cross_entropy(logits, label) '
                     'metrics = [f1(average="mean")] }')
    assert e.value.span is not None


def test_train_picks_the_model_its_section_names(tmp_path):
    from nndsl.train.run import _trained_model
    src = MODEL + MODEL.replace("model net", "model other") + \
        'train other { target label: i64[N]  loss = cross_entropy(logits, label) }'
    assert _trained_model(src) == "other"
