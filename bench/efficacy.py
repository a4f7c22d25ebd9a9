"""Does ARIES beat iterative DPO at an equal budget? The multi-seed efficacy benchmark.

Runs a named list of variants (a method plus `--set` overrides of one run config) on each task of
a spec file, every variant with several training seeds, and evaluates every model on one shared
pool of problems from the task's held-out generator (docs/efficacy-protocol.md; the code is the
`aries.sweep` package):

- two pools per task from the same generator with disjoint seeds: `validation` (choose recipes
  here) and `heldout` (report once);
- equal budget: every variant must generate the same number of responses per training prompt
  (checked); generated tokens and wall time per stage are reported next to the accuracies;
- accuracy per refinement round pooled over seeds, wrong→right / right→wrong per round, and
  paired differences against the initial model's direct answer, the baseline variant's best
  round and the model's own direct answer, each with a two-way bootstrap interval over seeds and
  problems (`aries.sweep.stats.seeds_problems_ci`).

Reports go to `results/`; what they are computed from (each run's config, manifest and
per-problem outcomes, no models) to `results/efficacy-runs/`, so anyone can recompute a report
without rerunning: `--report-only --runs results/efficacy-runs`.

    python bench/efficacy.py bench/efficacy.yaml --pool validation
    python bench/efficacy.py bench/efficacy.yaml --pool heldout
    python bench/efficacy.py bench/efficacy.yaml --pool validation --variants aries --seeds 0
    python bench/efficacy.py bench/efficacy.yaml --pool heldout --report-only \
        --runs results/efficacy-runs
"""

import sys

from aries.sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
