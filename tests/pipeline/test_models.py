from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from assay.errors import ConfigError
from assay.pipeline.models import BuiltinGPT, GPTConfig, HFCausalLM, add_lora, load_model
from assay.pipeline.train import Batches, TrainConfig, lr_at, pack, train
from conftest import CODE, PROSE

TINY = GPTConfig(context=32, n_layer=1, n_head=2, n_embd=32)


def tiny(**kw: object) -> BuiltinGPT:
    return BuiltinGPT(GPTConfig(**{**TINY.__dict__, **kw}), seed=0)  # type: ignore[arg-type]


def unigram_entropy(texts: list[str]) -> float:
    c = Counter(b for t in texts for b in [256, *t.encode()])
    n = sum(c.values())
    return -sum(k / n * math.log(k / n) for k in c.values())


def test_overfits_a_tiny_corpus() -> None:
    torch.manual_seed(0)
    m = tiny()
    texts = PROSE[:2]
    info = train(
        m, texts, TrainConfig(tokens=32 * 8 * 150, batch_size=8, lr=1e-2, allow_repeat=True, warmup=0.1)
    )
    seqs = Batches(pack(m, texts), m.context, 1)
    with torch.no_grad():
        per_tok = sum(float(m.loss(seqs.batch(k))) for k in range(seqs.n_seq)) / seqs.n_seq
    assert per_tok < 0.1 * unigram_entropy(texts), (per_tok, unigram_entropy(texts))
    assert info["epochs"] > 1


def test_doc_loss_equals_token_by_token_reference() -> None:
    m = tiny(context=16)
    text = PROSE[0][:70]
    ids = [256, *text.encode()]
    ref = 0.0
    for i in range(1, len(ids)):  # predict token i from at most `context` previous tokens
        ctx = ids[max(0, i - 16) : i]
        logits = m.logits(torch.tensor([ctx]))[0, -1]
        ref -= F.log_softmax(logits.double(), -1)[ids[i]].item()
    total, n = m.doc_loss(text, stride=1)
    assert n == len(ids) - 1 and total == pytest.approx(ref, rel=1e-5)
    t2, n2 = m.doc_loss(text)  # stride = context: windows restart, so the loss differs but counts agree
    assert n2 == n and t2 > 0
    with pytest.raises(ConfigError, match=r"stride 17 must be in 1\.\.context \(16\)"):
        m.doc_loss(text, stride=17)


def test_checkpoint_resume_equals_uninterrupted(tmp_path: Path) -> None:
    cfg = TrainConfig(
        tokens=32 * 4 * 12, batch_size=4, lr=5e-3, checkpoint_every=5, schedule="wsd", allow_repeat=True
    )
    texts = PROSE + CODE
    a = tiny()
    train(a, texts, cfg)
    b = tiny()
    train(b, texts, cfg, out=tmp_path, stop_after=7)  # checkpoint at step 5 and at 7 (the stop)
    c = tiny()
    train(c, texts, cfg, out=tmp_path)  # resumes at 7
    for (n, pa), (_, pc) in zip(a.module.state_dict().items(), c.module.state_dict().items()):
        assert torch.equal(pa, pc), n
    opt = torch.load(tmp_path / "step_0000012" / "optim.pt", weights_only=True)
    assert any("exp_avg_sq" in s for s in opt["state"].values())  # Adam moments saved for LESS


def test_budget_over_data_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"needs \d+\.\d+ epochs of the \d+ data tokens.*allow_repeat"):
        train(tiny(), PROSE[:1], TrainConfig(tokens=32 * 4 * 20, batch_size=4))


def test_lora_gradients_only_on_adapters() -> None:
    m = tiny(lora_r=4)
    loss = m.loss(torch.randint(0, 256, (2, 33)))
    loss.backward()
    grads = {n: p.grad for n, p in m.module.named_parameters()}
    assert all(("lora_" in n) == (g is not None) for n, g in grads.items())
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)
    assert [n for n, _ in m.grad_params("trainable")] == [n for n, _ in m.grad_params("lora")]
    with pytest.raises(ConfigError, match=r"no nn\.Linear named any of"):
        add_lora(torch.nn.Sequential(torch.nn.ReLU()))


def test_lr_schedules() -> None:
    c = TrainConfig(lr=1.0, min_lr_ratio=0.1, warmup=0.1, schedule="cosine")
    assert lr_at(0, 100, c) == pytest.approx(0.1) and lr_at(9, 100, c) == pytest.approx(1.0)
    assert lr_at(99, 100, c) == pytest.approx(0.1, abs=1e-3)
    w = TrainConfig(lr=1.0, min_lr_ratio=0.0, warmup=0.0, schedule="wsd", decay_fraction=0.2)
    assert lr_at(79, 100, w) == 1.0 and lr_at(90, 100, w) == pytest.approx(0.5)


def test_save_load_and_bad_model_dirs(tmp_path: Path) -> None:
    m = tiny()
    m.save(tmp_path / "m")
    m2 = load_model(str(tmp_path / "m"))
    assert m2.doc_loss(PROSE[0]) == m.doc_loss(PROSE[0])
    with pytest.raises(ConfigError, match=r"has no config\.json"):
        load_model(str(tmp_path / "nope"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"kind": "assay-gpt", "n_embd": 64, "n_head": 2}')
    (tmp_path / "bad" / "model.pt").write_bytes((tmp_path / "m" / "model.pt").read_bytes())
    with pytest.raises(ConfigError, match=r"cannot load weights .*model\.pt into the configured model"):
        load_model(str(tmp_path / "bad"))
    with pytest.raises(ConfigError, match=r"tokenizer file .*missing\.json does not exist"):
        BuiltinGPT(GPTConfig(tokenizer=f"file:{tmp_path / 'missing.json'}"))
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"is not a valid tokenizers JSON file"):
        BuiltinGPT(GPTConfig(tokenizer=f"file:{tmp_path / 'junk.json'}"))


def test_hf_adapter_on_a_tiny_random_model(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "<eos>": 1, **{w: i + 2 for i, w in enumerate(sorted(set(" ".join(PROSE).split())))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="[UNK]")
    cfg = transformers.GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=32, n_layer=1, n_head=2)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "hf")
    fast.save_pretrained(tmp_path / "hf")
    m = load_model(f"hf:{tmp_path / 'hf'}")
    assert isinstance(m, HFCausalLM) and m.context == 64
    total, n = m.doc_loss(PROSE[0])
    assert n == len(fast(PROSE[0])["input_ids"]) and 0 < total / n < 2 * math.log(len(vocab))
    before = total
    train(m, PROSE * 3, TrainConfig(tokens=64 * 2 * 5, batch_size=2, lr=1e-2, allow_repeat=True))
    assert m.doc_loss(PROSE[0])[0] < before
    with pytest.raises(ConfigError, match=r"model directory .*nothere does not exist"):
        load_model(f"hf:{tmp_path / 'nothere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"is not a loadable causal LM"):
        load_model(f"hf:{tmp_path / 'empty'}")
