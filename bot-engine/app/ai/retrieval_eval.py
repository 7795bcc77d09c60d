"""Retrieval quality: how often search puts the document that answers a question first
(recall@1) or among the first three (recall@3), over a labelled question set.

A question counts as found at k when its labelled document is among the first k distinct
documents of the ranking (strict), or when any of its acceptable documents is (lenient).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from app.ai.embeddings import Embedder
from app.ai.knowledge_base import SearchMode, documents_of, search

KS = (1, 3)


@dataclass(frozen=True)
class LabelledQuestion:
    question: str
    document: str
    also: tuple[str, ...] = ()


@dataclass
class Recall:
    mode: str
    model: str
    questions: int = 0
    strict: dict[int, int] = field(default_factory=lambda: dict.fromkeys(KS, 0))
    lenient: dict[int, int] = field(default_factory=lambda: dict.fromkeys(KS, 0))
    misses: list[tuple[str, str, list[str]]] = field(default_factory=list)  # at k = 3

    def rate(self, k: int, *, lenient: bool = False) -> float:
        hits = (self.lenient if lenient else self.strict)[k]
        return hits / self.questions if self.questions else 0.0


def load_questions(path: Path) -> list[LabelledQuestion]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        LabelledQuestion(q["question"], q["document"], tuple(q.get("also", ())))
        for q in data["questions"]
    ]


async def evaluate(
    session: AsyncSession,
    embedder: Embedder,
    questions: Sequence[LabelledQuestion],
    *,
    mode: SearchMode = "hybrid",
    depth: int = 12,
) -> Recall:
    """Recall of `search(mode)` over `questions`; `depth` passages are ranked per question
    (enough to hold three distinct documents)."""
    result = Recall(mode=mode, model=embedder.model)
    for item in questions:
        passages = await search(session, embedder, item.question, limit=depth, mode=mode)
        ranked = documents_of(passages)
        result.questions += 1
        for k in KS:
            top = ranked[:k]
            result.strict[k] += item.document in top
            result.lenient[k] += any(d in top for d in (item.document, *item.also))
        if item.document not in ranked[:3]:
            result.misses.append((item.question, item.document, ranked[:3]))
    return result
