"""Model-side scoring: batched log-likelihoods equal sums of the model's own log-probabilities, and
batched greedy generation equals a step-by-step argmax loop without a cache; decoder and T5."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

from flanforge.launcher.evaluation import scoring
from flanforge.launcher.evaluation.scoring import Scorer

PAD, EOS, VOCAB = 0, 1, 50


def tiny(arch: str):
    torch.manual_seed(0)
    if arch == "decoder":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=4, pad_token_id=PAD,
                                             eos_token_id=EOS, bos_token_id=2))
    else:
        model = T5ForConditionalGeneration(T5Config(vocab_size=VOCAB, d_model=32, d_ff=64, d_kv=8, num_layers=2,
                                                    num_heads=4, pad_token_id=PAD, eos_token_id=EOS,
                                                    decoder_start_token_id=PAD))
    model.config._attn_implementation = "sdpa"
    # Larger weights than the init so that greedy outputs vary with the prompt.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
    return model.eval()


REQUESTS = [  # (prompt, options): options of different lengths share a prompt
    ([5, 6, 7], [[8, 9, EOS], [10, EOS], [8, 11, 12, 13, EOS]]),
    ([11], [[12, 13, 14, 15, EOS]]),
    ([3, 4, 5, 6, 7, 8, 9], [[20, EOS], [21, EOS]]),
    ([4], [[5, EOS]]),  # the decoder packs these two with [11] into one row of 13 (the longest example)
    ([30, 31], [[32, EOS]]),
]
PAIRS = [(p, o) for p, opts in REQUESTS for o in opts]


def hand_loglikelihood(model, arch, prompt, target):
    """Sum over target tokens of log_softmax(logits) from one unpadded forward of the model itself."""
    with torch.no_grad():
        if arch == "decoder":
            ids = torch.tensor([prompt + target])
            logp = model(input_ids=ids).logits[0].log_softmax(-1)
            return sum(float(logp[len(prompt) - 1 + j, tok]) for j, tok in enumerate(target))
        logits = model(input_ids=torch.tensor([prompt + [EOS]]), decoder_input_ids=torch.tensor([[PAD] + target[:-1]])).logits
        logp = logits[0].log_softmax(-1)
        return sum(float(logp[j, tok]) for j, tok in enumerate(target))


@pytest.mark.parametrize("arch", ["decoder", "t5"])
def test_loglikelihoods_equal_hand_sums(arch):
    model = tiny(arch)
    scorer = Scorer(model, arch, PAD, EOS)
    batched = [ll for lls in scorer.loglikelihoods(REQUESTS) for ll in lls]  # all in one padded forward
    expected = [hand_loglikelihood(model, arch, p, t) for p, t in PAIRS]
    # fp32: packing and padding change the kernels' shapes, hence rounding (about 1e-5 relative here)
    assert batched == pytest.approx(expected, rel=5e-5, abs=1e-4)
    alone = [scorer.loglikelihoods([(p, [o])])[0][0] for p, o in PAIRS]
    assert alone == pytest.approx(batched, rel=5e-5, abs=1e-4)
    assert len(set(round(v, 3) for v in batched)) == len(batched)  # the pairs really differ


SHARING = [  # what the decoder's token tries share: every case against one forward per option
    ([5, 6, 7, 8], [[9, 10, EOS], [9, 11, EOS], [EOS], [12]]),  # options sharing first tokens; one-token options
    ([5, 6, 7, 8, 12, 13], [[9, EOS], [9, EOS, 14, 15, EOS]]),  # a longer prompt sharing the first's beginning;
    ([5, 6, 7], [[8, EOS], [8, 12, 13, EOS]]),                   # an option that is a prefix of another (and here
    ([5, 6, 7, 8], [[9, 10, EOS], [9, 11, EOS], [EOS], [12]]),  # of the first prompt); a duplicate request
    ([20, 21, 22], [[23, EOS], [24, EOS]]),                      # nothing shared
]


@pytest.mark.parametrize("mask_elements", [None, 1])
def test_decoder_tries_equal_one_forward_per_option(monkeypatch, mask_elements):
    model = tiny("decoder")
    scorer = Scorer(model, "decoder", PAD, EOS)
    if mask_elements is not None:  # every row in a forward of its own
        monkeypatch.setattr(scoring, "MASK_ELEMENTS", mask_elements)
    rows, _ = scoring.pack(SHARING, scorer.key_cost)
    assert len(rows) < len(SHARING)  # requests really share rows (and so attention masks)
    batched = scorer.loglikelihoods(SHARING)
    for (prompt, options), lls in zip(SHARING, batched):
        assert lls == pytest.approx([hand_loglikelihood(model, "decoder", prompt, o) for o in options], rel=5e-5, abs=1e-4)
    assert batched[0] == batched[3]
    assert len({round(v, 3) for lls in batched for v in lls}) == len({(tuple(p), tuple(o)) for p, opts in SHARING
                                                                      for o in opts})


def test_a_shared_prefix_is_fed_once_and_scores_as_without_it():
    """A task's shared beginning (instruction, exemplars): its keys and values are computed once, kept for
    the next batch, and the rest of each prompt is scored after them as from one forward per option."""
    model = tiny("decoder")
    head = [5, 6, 7, 8, 9, 10]
    batches = [[(head + [11, 12], [[13, EOS], [14]]), (head + [15], [[13, EOS], [16, 17, EOS]])],
               [(head + [18], [[19, EOS]]), (head + [11, 20, 21], [[22, EOS], [EOS]])]]
    fed = []
    model.register_forward_hook(lambda _, args, kwargs, out: fed.append(kwargs["input_ids"].tolist()),
                                with_kwargs=True)
    scorer = Scorer(model, "decoder", PAD, EOS)
    scored = [scorer.loglikelihoods(batch, shared=len(head)) for batch in batches]
    assert fed.count([head]) == 1 and len(fed) == 3  # the prefix once, then one forward per batch
    assert not {5, 6, 7, 8, 9, 10} & {t for ids in fed[1:] for row in ids for t in row}  # rows: what follows it
    for batch, lls in zip(batches, scored):
        for (prompt, options), got in zip(batch, lls):
            assert got == pytest.approx([hand_loglikelihood(model, "decoder", prompt, o) for o in options],
                                        rel=5e-5, abs=1e-4)
    # a prompt no longer than the prefix keeps its last token out of it (the first option token is read there)
    assert scorer.loglikelihoods([(head, [[11, EOS]])], shared=len(head))[0] == pytest.approx(
        [hand_loglikelihood(model, "decoder", head, [11, EOS])], rel=5e-5, abs=1e-4)


def test_synced_ranks_make_as_many_forwards_as_the_busiest(monkeypatch):
    """ZeRO-3: every forward gathers weights from all ranks, so a rank whose batch fits one forward
    repeats it as often as another rank needs (here: a rank said to need 3), with the same results."""
    model = tiny("decoder")
    expected = Scorer(model, "decoder", PAD, EOS).loglikelihoods(SHARING)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))

    def all_reduce(tensor, op):
        assert op == torch.distributed.ReduceOp.MAX
        tensor.clamp_(min=3)

    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    assert Scorer(model, "decoder", PAD, EOS, synced_gpus=True).loglikelihoods(SHARING) == expected
    assert len(calls) == 3


@pytest.mark.parametrize("arch", ["decoder", "t5"])
def test_positions_count_what_the_model_is_fed(arch):
    model = tiny(arch)
    scorer = Scorer(model, arch, PAD, EOS)
    fed = []
    model.register_forward_pre_hook(lambda _, args, kwargs: fed.append(
        sum(kwargs[k].numel() for k in ("input_ids", "decoder_input_ids") if kwargs.get(k) is not None)),
        with_kwargs=True)
    scorer.loglikelihoods(SHARING)
    assert scorer.positions(SHARING) == sum(fed)
    if arch == "decoder":  # one option alone: its prompt and all but its last token
        assert scorer.positions([([5, 6, 7], [[8, 9, EOS]])]) == 5
        assert sum(fed) < sum(len(p) + len(o) - 1 for p, opts in SHARING for o in opts)


def greedy_no_cache(model, arch, prompt, max_new):
    """The reference: argmax of a full forward per new token, no KV cache, no padding."""
    out = []
    with torch.no_grad():
        for _ in range(max_new):
            if arch == "decoder":
                logits = model(input_ids=torch.tensor([prompt + out]), use_cache=False).logits[0, -1]
            else:
                logits = model(input_ids=torch.tensor([prompt + [EOS]]), decoder_input_ids=torch.tensor([[PAD] + out]),
                               use_cache=False).logits[0, -1]
            token = int(logits.argmax())
            if token == EOS:
                break
            out.append(token)
    return out


@pytest.mark.parametrize("arch", ["decoder", "t5"])
def test_batched_generate_equals_greedy_loop(arch):
    model = tiny(arch)
    scorer = Scorer(model, arch, PAD, EOS)
    prompts = [[5, 6, 7], [11], [3, 4, 5, 6, 7, 8, 9], [30, 31]]
    batched = scorer.generate(prompts, max_new_tokens=6)
    expected = [greedy_no_cache(model, arch, p, 6) for p in prompts]
    assert batched == expected
    assert len({tuple(r) for r in batched}) > 1


def test_generate_stops_at_stop_strings():
    model = tiny("decoder")
    scorer = Scorer(model, "decoder", PAD, EOS)
    full = scorer.generate([[5, 6, 7]], max_new_tokens=6)[0]
    assert len(full) >= 3
    decode = lambda ids: " ".join(map(str, ids))  # noqa: E731
    stop = decode(full[:2])
    stopped = scorer.generate([[5, 6, 7]], max_new_tokens=6, stops=[stop], decode=decode)[0]
    assert stopped == full[:2]


@pytest.mark.parametrize("arch", ["decoder", "t5"])
def test_a_finished_row_leaves_the_batch(arch):
    """Rows end at EOS or a stop string, each at its own step; the later forwards run the rows left only."""
    model = tiny(arch)
    prompts = [[5, 6, 7], [11], [3, 4, 5, 6, 7, 8, 9], [30, 31]]
    decode = lambda ids: " ".join(map(str, ids))  # noqa: E731
    full = [greedy_no_cache(model, arch, p, 6) for p in prompts]
    stop = decode(full[0][:2])
    expected = [next((r[:n] for n in range(1, len(r) + 1) if stop in decode(r[:n])), r) for r in full]
    assert len(expected[0]) == 2 and max(map(len, expected)) > 2
    fed = []  # rows per forward of the model (T5: of its decoder; the encoder runs once, on every row)
    key = "input_ids" if arch == "decoder" else "decoder_input_ids"
    model.register_forward_hook(lambda _, args, kwargs, out: fed.append(len(kwargs[key])), with_kwargs=True)
    assert Scorer(model, arch, PAD, EOS).generate(prompts, 6, stops=[stop], decode=decode) == expected
    assert fed[:2] == [4, 4] and fed[-1] < 4 and fed == sorted(fed, reverse=True)


def test_rejects_empty_targets():
    scorer = Scorer(tiny("decoder"), "decoder", PAD, EOS)
    with pytest.raises(ValueError, match="at least one token"):
        scorer.loglikelihoods([([5], [[]])])


def test_conventions_score_the_tokens_each_anchor_scores(tokenizer_dir):
    from flanforge.constants import SCORING_CONVENTIONS
    from flanforge.launcher.evaluation.scoring import CONVENTIONS, get_convention
    from flanforge.model.tokenizer import load_tokenizer

    encode = load_tokenizer(tokenizer_dir).encode_batch
    t5x, lm_eval = get_convention("t5x", "decoder"), get_convention(None, "decoder")
    assert lm_eval.name == "lm-eval" and get_convention(None, "t5").name == "t5x"
    assert tuple(CONVENTIONS) == SCORING_CONVENTIONS  # what eval.convention is checked against
    assert t5x.continuations(encode, "Answer:", ["yes"], "decoder", 7) == [encode(["yes"])[0] + [7]]
    # lm-eval: the context's trailing space moves onto " option", the whole text encoded then cut after the context
    assert lm_eval.context("Is it? ") == "Is it?"
    whole, context = encode(["Is it?  yes"])[0], encode(["Is it?"])[0]
    assert lm_eval.continuations(encode, "Is it? ", ["yes"], "decoder", 7) == [whole[len(context):]]
    assert lm_eval.continuations(encode, "Is it? ", ["yes"], "t5", 7) == encode(["  yes"])


def test_eval_convention_in_the_config_is_checked():
    from flanforge.errors import ConfigError
    from flanforge.launcher.config import EvalConfig

    assert EvalConfig(convention="t5x").convention == "t5x"
    with pytest.raises(ConfigError, match=r"eval.convention: unknown 'lmeval' \(conventions: t5x, lm-eval\); did you mean 'lm-eval'"):
        EvalConfig(convention="lmeval")
