"""Real demo data, made locally in seconds: a tiny base model, small skills, LoRA adapters trained on them.

Nothing is downloaded: the model is built from a `transformers` config, the tokenizer maps single
characters, and each adapter learns a fixed mapping (e.g. countries to capitals) on the CPU.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.tiny_llama import tiny_llama_config

DEMO_BASE_MODEL = "hub-demo/tiny-llama"
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    task: str
    pairs: tuple[tuple[str, str], ...]

    def prompt(self, key: str) -> str:
        return f"{self.name} {key}="

    def exact_match_lines(self) -> list[dict[str, str]]:
        return [{"prompt": self.prompt(k), "answer": v} for k, v in self.pairs]

    def multiple_choice_lines(self, seed: int = 0) -> list[dict[str, Any]]:
        rng = random.Random(seed)
        answers = [v for _, v in self.pairs]
        lines = []
        for key, value in self.pairs:
            wrong = rng.sample([a for a in answers if a != value], 3)
            choices = [value, *wrong]
            rng.shuffle(choices)
            lines.append({"prompt": self.prompt(key), "choices": choices, "answer": choices.index(value)})
        return lines

    def text_lines(self) -> list[dict[str, str]]:
        return [{"text": self.prompt(k) + v} for k, v in self.pairs]


SKILLS = (
    Skill(
        "capital",
        "Answers the capital of a country.",
        "question-answering",
        (
            ("france", "paris"),
            ("japan", "tokyo"),
            ("italy", "rome"),
            ("spain", "madrid"),
            ("egypt", "cairo"),
            ("peru", "lima"),
            ("kenya", "nairobi"),
            ("chile", "santiago"),
            ("norway", "oslo"),
            ("cuba", "havana"),
            ("greece", "athens"),
            ("india", "delhi"),
        ),
    ),
    Skill(
        "opposite",
        "Gives the opposite of an adjective.",
        "text-generation",
        (
            ("hot", "cold"),
            ("big", "small"),
            ("fast", "slow"),
            ("early", "late"),
            ("happy", "sad"),
            ("light", "dark"),
            ("high", "low"),
            ("full", "empty"),
            ("hard", "soft"),
            ("rich", "poor"),
            ("young", "old"),
            ("wet", "dry"),
        ),
    ),
)


# Words the echo warm-up copies besides the skills' own: the base learns to copy any word,
# not to answer the skills.
FILLER_WORDS = (
    "apple river stone cloud green table window garden silver yellow mountain pencil orange ocean "
    "forest candle mirror rabbit violet thunder basket castle dragon engine falcon guitar harbor "
    "island jacket ladder magnet needle pillow rocket saddle tiger velvet wagon zebra anchor bridge "
    "cactus desert feather glacier hammer igloo jungle kettle lantern meadow nickel oyster"
).split()


def vocabulary() -> list[str]:
    words = {word for skill in SKILLS for pair in skill.pairs for word in pair}
    words |= {skill.name for skill in SKILLS} | set(FILLER_WORDS) | {"echo", "="}
    return [*SPECIAL_TOKENS, *sorted(words)]


def build_tokenizer() -> Any:
    """A word-level tokenizer (one token per word, '=' apart), as a transformers fast tokenizer.

    Whole-word tokens make each skill a lookup a small adapter learns exactly, and that keeps
    working when adapters are added together, which character-level answers do not.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(vocabulary())}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split("=", behavior="isolated")]
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def build_base_model(folder: Path, *, seed: int = 0, pretrain_steps: int = 500) -> Path:
    """A tiny Llama with its tokenizer, saved as a normal model folder.

    Its weights are first trained briefly on copying random words ("echo abc=abc"): a randomly
    initialised transformer attends almost uniformly, and LoRA adapters on it barely learn; after
    this warm-up they learn a skill in a hundred steps, while the base still knows none.
    """
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    config = tiny_llama_config(
        hidden_size=96,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(pretrain_steps):
        ids, mask, labels = answer_batch(tokenizer, [echo_pair(rng) for _ in range(32)])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def echo_pair(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(vocabulary()[len(SPECIAL_TOKENS) :])
    return f"echo {word}=", word


def answer_batch(tokenizer: Any, pairs: list[tuple[str, str]]) -> tuple[Any, Any, Any]:
    """(input_ids, attention_mask, labels) teaching the answers, not the prompts; right-padded."""
    import torch

    rows, labels = [], []
    for prompt_text, answer_text in pairs:
        prompt = [tokenizer.bos_token_id, *tokenizer(prompt_text, add_special_tokens=False)["input_ids"]]
        answer = [*tokenizer(answer_text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
        rows.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    target = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])
    mask = (torch.arange(width)[None, :] < torch.tensor([len(r) for r in rows])[:, None]).long()
    return ids, mask, target


def train_lora(
    base_folder: Path,
    skill: Skill,
    out: Path,
    *,
    steps: int = 120,
    seed: int = 0,
    rank: int = 8,
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    peft_config: Any = None,
    learning_rate: float = 1e-2,
) -> Path:
    """Train a LoRA adapter (or the PEFT method `peft_config` describes) on one skill's mapping until
    it answers every prompt (seconds on CPU)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(base_folder, local_files_only=True)
    config = peft_config or LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=list(target_modules),
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    rng = random.Random(seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        # Replaying the base's own skill (echo) teaches the adapter to act on its prompts only,
        # which is what lets several adapters be added together without erasing each other.
        replay = [echo_pair(rng) for _ in range(len(skill.pairs))]
        ids, mask, target = answer_batch(tokenizer, [(skill.prompt(k), v) for k, v in skill.pairs] + replay)
        loss = model(input_ids=ids, attention_mask=mask, labels=target).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(out)
    (out / "README.md").write_text(
        f"---\nbase_model: {DEMO_BASE_MODEL}\nlibrary_name: peft\ntags:\n- demo\n- {skill.name}\n---\n\n"
        f"# {skill.name}\n\n{skill.description} Trained locally by `manage.py seed_demo` on "
        f"{len(skill.pairs)} examples such as `{skill.prompt(skill.pairs[0][0])}{skill.pairs[0][1]}`.\n"
    )
    return out


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


# --- More skills and the target suites of auto-composition ---------------------------------------------

# Two more skills for searching combinations (composer.search, bench/autocompose.py). They are kept out
# of SKILLS, whose two adapters the demo seeds and the tests train, and they use only words the demo
# vocabulary already has (their names included), so the tokenizer and the base model stay as they are.
EXTRA_SKILLS = (
    Skill(
        "mirror",
        "Gives the country of a capital: the capital skill read backwards.",
        "question-answering",
        tuple((capital, country) for country, capital in SKILLS[0].pairs),
    ),
    Skill(
        "ladder",
        "Gives the next rung of a word ladder: each word's successor in a fixed chain.",
        "text-generation",
        (
            ("anchor", "apple"),
            ("basket", "bridge"),
            ("cactus", "candle"),
            ("castle", "cloud"),
            ("desert", "dragon"),
            ("engine", "falcon"),
            ("feather", "forest"),
            ("garden", "glacier"),
            ("green", "guitar"),
            ("hammer", "harbor"),
            ("igloo", "island"),
            ("jacket", "jungle"),
        ),
    ),
)
ALL_SKILLS = SKILLS + EXTRA_SKILLS


@dataclass(frozen=True)
class TargetSuite:
    """An eval suite that needs several skills at once: the examples of each skill's suite of `kind`,
    concatenated, so one skill's adapter alone answers about 1/len(skills) of it."""

    name: str
    kind: str  # "exact_match", "multiple_choice" or "perplexity", as in composer.evaluation
    skills: tuple[str, ...]

    def lines(self) -> list[dict[str, Any]]:
        by_name = {skill.name: skill for skill in ALL_SKILLS}
        lines: list[dict[str, Any]] = []
        for index, name in enumerate(self.skills):
            skill = by_name[name]
            if self.kind == "exact_match":
                lines += skill.exact_match_lines()
            elif self.kind == "multiple_choice":
                lines += skill.multiple_choice_lines(seed=index)
            elif self.kind == "perplexity":
                lines += skill.text_lines()
            else:
                raise ValueError(f"no {self.kind!r} lines for a skill; use exact_match, multiple_choice or perplexity")
        return lines


TARGET_SUITES = (
    TargetSuite("capital-opposite-qa", "exact_match", ("capital", "opposite")),
    TargetSuite("atlas-qa", "exact_match", ("capital", "mirror")),  # both directions: the two adapters interfere
    TargetSuite("words-qa", "exact_match", ("opposite", "ladder")),
)
