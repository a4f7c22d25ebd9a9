"""Temporal Self-Rewarding (Wang et al. 2025, "Temporal Self-Rewarding Language Models:
Decoupling Chosen-Rejected via Past-Future", arXiv 2508.06026), on top of Self-Rewarding.

In Self-Rewarding (arXiv 2401.10020) the chosen and the rejected response both come from π_t,
so they improve together and the pairs' contrast fades. Temporal Self-Rewarding decouples them:
- Anchored Rejection: the rejected response comes from the past, the initial model π_0 (its
  worst-judged response to the prompt), so the negatives do not get better over iterations.
- Future-Guided Chosen: a temporary "future" model is trained from π_t on the anchored pairs; it
  answers the same prompts, and its best-judged response replaces the chosen one when it is
  judged better. π_{t+1} is then trained from π_t on these pairs.

Per iteration (`method: temporal-self-rewarding`, declared in loop.py): prompts → collect (π_t) →
score → anchor (π_0's responses, t > 0; at t = 0 π_t is π_0 and its own responses are the
anchors) → select (anchored pairs) → future_model (the temporary model) → future (its
responses, judged; the final selections) → pairs → train → eval.
At this scale [design, where the paper's text was not checked in detail]: one judge per
iteration, π_t (or the reward source of the config), scores every response, the past's and the
future's too, so that all scores of a prompt are comparable; the future model's responses are
as many as π_t's (answer + N samples); a pair needs its chosen judged strictly above its
rejected. The temporary model is kept in iter_<t>/future/ (a resume does not retrain it).
"""

from __future__ import annotations

from typing import Any

from aries.core.jsonl import atomic_write_jsonl, read_jsonl
from aries.method.select import Selection, candidates_of, selection_record
from aries.method.strategies import Candidate, normalised
from aries.pipeline.runconfig import RunConfig
from aries.pipeline.rundir import RunDir
from aries.pipeline.session import Session
from aries.pipeline.stages import collect_into, pairs_into, policy, score_into, train_into

STEP_DESCRIPTIONS = {
    "anchor": "π_0 answers the same prompts (answer + N samples), judged like π_t's responses",
    "select": "anchored pairs: π_t's best-judged response against π_0's worst (at t = 0 its "
    "own worst), kept when judged strictly better",
    "future_model": "a temporary future model: π_t trained on the anchored pairs",
    "future": "the future model answers the prompts, judged; its best response becomes the "
    "chosen one where judged above π_t's",
}
"""What each temporal step does, for `aries run --check`."""


def temporal_pairs(
    chains: list[dict[str, Any]],
    scores: list[dict[str, Any]],
    anchors: list[dict[str, Any]],
    anchor_scores: list[dict[str, Any]],
    future: list[dict[str, Any]] = (),
    future_scores: list[dict[str, Any]] = (),
) -> Selection:
    """One pair per prompt: chosen = the best-judged response of π_t (or of the future model,
    when strictly better), rejected = the worst-judged response of π_0 (the anchors)."""
    present = _scored(chains, scores, "")
    past = _scored(anchors, anchor_scores, "anchor:")
    ahead = _scored(future, future_scores, "future:")
    pairs, drops = [], {}
    for record in chains:
        key = str(record["id"])
        chosen_pool = present.get(key, []) + ahead.get(key, [])
        rejected_pool = past.get(key, [])
        reason = None
        if not chosen_pool or not rejected_pool:
            reason = "too_few_scored"
        else:
            chosen = max(chosen_pool, key=lambda c: c.score)  # ties: π_t's own, then first
            rejected = min(rejected_pool, key=lambda c: c.score)
            if chosen.score <= rejected.score:
                reason = "not_better"
            elif normalised(chosen.text) == normalised(rejected.text):
                reason = "identical"
        if reason:
            drops[reason] = drops.get(reason, 0) + 1
            continue
        pairs.append(selection_record(record, chosen, rejected, "temporal"))
    return Selection(pairs, dict(sorted(drops.items())))


def _scored(
    chains: list[dict[str, Any]], scores: list[dict[str, Any]], prefix: str
) -> dict[str, list[Candidate]]:
    """Each prompt's scored responses, labelled with where they come from."""
    by_id = {str(r["id"]): r for r in scores}
    found = {}
    for record in chains:
        key = str(record["id"])
        candidates = candidates_of(record, by_id.get(key), None, "all")
        for candidate in candidates:
            candidate.label = prefix + candidate.label
        found[key] = [c for c in candidates if c.score is not None]
    return found


def _anchor_files(run: RunDir, t: int) -> tuple[list, list]:
    """π_0's scored responses to iteration t's prompts (at t = 0, π_t's own)."""
    if t == 0:
        return run.read_chains(0), run.read_scores(0)
    return read_jsonl(run.anchors(t)), read_jsonl(run.anchor_scores(t))


def anchor(run: RunDir, config: RunConfig, t: int, session: Session) -> dict[str, Any]:
    """Anchored Rejection's material: π_0 answers iteration t's prompts, the judge scores."""
    counts = collect_into(run, config, t, session, policy(run, config, 0), run.anchors(t))
    scored = score_into(run, config, t, session, run.anchors(t), run.anchor_scores(t))
    return {**counts, "scored": scored["responses"], "unscored": scored["unscored"]}


def select(run: RunDir, config: RunConfig, t: int, session: Session) -> dict[str, Any]:
    """The anchored pairs: π_t's best against π_0's worst (the temporary model's data)."""
    selection = temporal_pairs(run.read_chains(t), run.read_scores(t), *_anchor_files(run, t))
    atomic_write_jsonl(run.anchored(t), selection.pairs)
    return _counts(t, session, "anchored", selection)


def future_model(run: RunDir, config: RunConfig, t: int, session: Session) -> dict[str, Any]:
    """The temporary future model: π_t trained on the anchored pairs (the config's views: the
    direct view, as resolve_config sets for this method)."""
    counts = pairs_into(config, t, read_jsonl(run.anchored(t)), run.future_pairs(t))
    if not counts["pairs"]:
        return {"pairs": 0, "skipped": "no anchored pairs: no future model"}
    session.release()  # hand the memory to the trainer
    trained = train_into(
        run, config, t, run.future_pairs(t), run.future_model(t), progress=session.progress
    )
    return {"pairs": counts["pairs"], **trained}


def future(run: RunDir, config: RunConfig, t: int, session: Session) -> dict[str, Any]:
    """Future-Guided Chosen: the future model answers the prompts, π_t's judge scores, and the
    final pairs take the future's best response as chosen where it is judged better."""
    chains, scores = run.future_chains(t), run.future_scores(t)
    future_chains, future_scores, counts = [], [], {}
    if run.future_model(t).is_dir():
        counts = collect_into(run, config, t, session, str(run.future_model(t)), chains)
        score_into(run, config, t, session, chains, scores)
        future_chains, future_scores = read_jsonl(chains), read_jsonl(scores)
    selection = temporal_pairs(
        run.read_chains(t),
        run.read_scores(t),
        *_anchor_files(run, t),
        future_chains,
        future_scores,
    )
    atomic_write_jsonl(run.selections(t), selection.pairs)
    from_future = sum(p["chosen_from"].startswith("future:") for p in selection.pairs)
    return {
        "future_responses": counts.get("responses", 0),
        "chosen_from_future": from_future,
        **_counts(t, session, "future-guided", selection),
    }


def _counts(t: int, session: Session, what: str, selection: Selection) -> dict[str, Any]:
    """The select stage's counts (one pair per kept prompt), as stages.select records them."""
    kept = len(selection.pairs)
    dropped = sum(selection.drop_counts.values())
    session.log(f"iteration {t}: {kept} {what} pairs, dropped {selection.drop_counts}")
    return {
        "prompts_in": kept + dropped,
        "kept": kept,
        "selected_pairs": kept,
        "dropped": dropped,
        "drop_counts": selection.drop_counts,
    }
