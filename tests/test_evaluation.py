"""Perplexity counts only label tokens; classification scores are scikit-learn's; batched greedy generation
answers every prompt as one at a time would; a stored adapter loads with the eval rows it can take."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from adapterflow.evaluation.metrics import response_perplexity
from schemas.method import LoraMethod, PromptMethod


class UniformModel(torch.nn.Module):
    """Predicts every token with equal probability: perplexity equals the vocabulary size."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids, logits_to_keep=None, **kwargs):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        if logits_to_keep is not None:  # a boolean mask, as transformers models take it: flattened rows
            logits = logits[logits_to_keep]
        return type("Out", (), {"logits": logits})()


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_uniform_model_has_perplexity_of_the_vocabulary() -> None:
    items = [
        {"input_ids": np.array([1, 2, 3, 4]), "labels": np.array([-100, -100, 3, 4])},
        {"input_ids": np.array([1, 2]), "labels": np.array([-100, 2])},
    ]
    result, per_example = response_perplexity(UniformModel(50), ListDataset(items), 0, 2, torch.device("cpu"), "fp32")
    assert result["eval_tokens"] == 3
    assert math.isclose(result["perplexity"], 50, rel_tol=1e-5)
    assert per_example["tokens"] == [2.0, 1.0]  # the first label of each example is not scored
    assert per_example["nll"] == pytest.approx([2 * math.log(50), math.log(50)], rel=1e-5)


def test_per_example_nll_is_each_examples_own_in_eval_order_packed_or_padded(tiny_model_dir) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    generator = np.random.default_rng(3)
    items = []
    for length in (9, 3, 14, 5, 7, 2, 11):  # packing reorders these, longest first, into rows
        ids = generator.integers(5, 60, length)
        labels = ids.copy()
        labels[: length // 3] = -100
        items.append({"input_ids": ids, "labels": labels})
    dataset, cpu = ListDataset(items), torch.device("cpu")
    packed_metrics, packed = response_perplexity(model, dataset, 0, 4, cpu, "fp32", row_tokens=16)
    padded_metrics, padded = response_perplexity(model, dataset, 0, 4, cpu, "fp32", packed=False)
    alone = [response_perplexity(model, ListDataset([item]), 0, 1, cpu, "fp32")[1] for item in items]
    assert packed["tokens"] == padded["tokens"] == [a["tokens"][0] for a in alone] == \
        [float((item["labels"][1:] != -100).sum()) for item in items]
    assert packed["nll"] == pytest.approx([a["nll"][0] for a in alone], rel=1e-4)
    assert padded["nll"] == pytest.approx(packed["nll"], rel=1e-4)
    for metrics, values in ((packed_metrics, packed), (padded_metrics, padded)):  # the aggregate is their sum
        assert metrics["eval_tokens"] == sum(values["tokens"])
        assert metrics["loss"] == pytest.approx(sum(values["nll"]) / sum(values["tokens"]), rel=1e-12)


def test_padded_loss_scores_the_same_tokens_as_packed_and_skips_virtual_token_logits(tiny_model_dir) -> None:
    from transformers import AutoModelForCausalLM

    from adapterflow.evaluation.metrics import padded_next_token_loss
    from adapterflow.tokenization.collate import PadToLongest
    from adapterflow.tokenization.packing import PackedCollator, next_token_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    items = [{"input_ids": np.array([5, 6, 7, 8, 9]), "labels": np.array([5, 6, 7, 8, 9])},
             {"input_ids": np.array([10, 11, 12]), "labels": np.array([-100, 11, 12])}]
    with torch.no_grad():
        packed, packed_count = next_token_loss(model, PackedCollator(0, 64)(items), reduction="sum")
        padded, padded_count = padded_next_token_loss(model, PadToLongest(0)(items))

        class WithVirtualTokens(torch.nn.Module):  # what prompt tuning returns: 3 extra logit rows in front
            def forward(self, input_ids, attention_mask):
                logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
                return type("Out", (), {"logits": torch.cat([torch.randn(logits.shape[0], 3, logits.shape[2]), logits], 1)})()

        virtual, virtual_count = padded_next_token_loss(WithVirtualTokens(), PadToLongest(0)(items))
    assert packed_count == padded_count == virtual_count == 4 + 2  # the first label of each example is not scored
    assert math.isclose(float(packed), float(padded), rel_tol=1e-4)
    assert math.isclose(float(virtual), float(padded), rel_tol=1e-6)


class FirstTokenClassifier(torch.nn.Module):
    """Predicts the class given by each row's first token id (its logit is 1, the others 0)."""

    def forward(self, input_ids, attention_mask):
        return type("Out", (), {"logits": torch.nn.functional.one_hot(input_ids[:, 0], 3).float()})()


def test_classification_metrics_are_scikit_learns_accuracy_and_macro_f1() -> None:
    from sklearn.metrics import f1_score

    from adapterflow.evaluation.metrics import classification_metrics

    predicted, references = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0]
    items = [{"input_ids": np.array([p, 1]), "labels": np.array([r])} for p, r in zip(predicted, references)]
    metrics, per_example = classification_metrics(FirstTokenClassifier(), ListDataset(items), 0, 4,
                                                  torch.device("cpu"), "fp32")
    assert per_example["predicted"] == predicted and per_example["label"] == references
    assert per_example["correct"] == [1, 0, 1, 1, 1, 0] and sum(per_example["correct"]) / 6 == metrics["accuracy"]
    assert sum(per_example["nll"]) / 6 == pytest.approx(metrics["loss"]) and per_example["tokens"] == [1] * 6
    assert metrics["accuracy"] == 4 / 6 and metrics["eval_examples"] == 6
    # per-class F1: class 0: 2*1/(2+2) = 0.5, class 1: 2*1/(1+2) = 2/3, class 2: 2*2/(3+2) = 0.8
    assert math.isclose(metrics["macro_f1"], (0.5 + 2 / 3 + 0.8) / 3)
    assert metrics["macro_f1"] == f1_score(references, predicted, average="macro")


def test_batched_generation_matches_one_prompt_at_a_time_and_restores_the_padding_side(tiny_model_dir) -> None:
    from transformers import AutoModelForCausalLM

    from adapterflow.evaluation.metrics import generate_answers
    from adapterflow.models.base import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = load_tokenizer(tiny_model_dir)
    side = tokenizer.padding_side
    conversations = [[{"role": "user", "content": text}] for text in
                     ("hi", "what does sorted return for a long list of words", "name a colour", "why")]
    cpu = torch.device("cpu")
    batched = generate_answers(model, tokenizer, conversations, 5, cpu, "fp32", batch_size=3)
    one_by_one = [generate_answers(model, tokenizer, [c], 5, cpu, "fp32", batch_size=1)[0] for c in conversations]
    assert len(batched) == 4 and batched == one_by_one
    assert tokenizer.padding_side == side
    assert generate_answers(model, tokenizer, [], 5, cpu, "fp32") == []


@pytest.mark.parametrize("method", [LoraMethod(type="lora", r=2), PromptMethod(type="prompt", init="random",
                                                                                 num_virtual_tokens=4)])
def test_a_stored_adapter_loads_on_its_base_with_its_tokenizer_and_packs_unless_it_learns_a_prompt(
    tiny_model_dir, tmp_path, method
) -> None:
    from adapterflow.evaluation.stored_adapters import load_stored_adapter
    from adapterflow.methods.artifacts import save_trained
    from adapterflow.methods.build import ModelSpec, build_trainable
    from adapterflow.models.base import load_tokenizer

    cpu = torch.device("cpu")
    tokenizer = load_tokenizer(tiny_model_dir)
    trained = build_trainable(method, str(tiny_model_dir), ModelSpec(), cpu, total_steps=1)
    save_trained(trained, tokenizer, method, ModelSpec(), tmp_path / "adapter")
    loaded = load_stored_adapter(tmp_path / "adapter", str(tiny_model_dir), cpu)
    assert loaded.packed is not method.prompt_learning and not loaded.model.training
    assert loaded.tokenizer.pad_token_id == tokenizer.pad_token_id
