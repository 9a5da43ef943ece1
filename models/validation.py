"""Cross-field rules of a release plan, each naming the exact field path it is about."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from models.jobs import job_problems
from models.plan import ReleasePlan
from models.resources import DEFAULT_REGION, ResourceKey, plan_resource_keys


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan: where (``waves[1].after``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def _duplicates(names: Iterable[str], section: str, noun: str) -> list[Problem]:
    seen: set[str] = set()
    problems = []
    for i, name in enumerate(names):
        if name in seen:
            problems.append(Problem(f"{section}[{i}].name", f"duplicate {noun} name {name!r}"))
        seen.add(name)
    return problems


def find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """A cycle in ``node -> predecessors`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for pred in edges.get(node, []):
            if state.get(pred) == 1:
                return stack[stack.index(pred) :] + [pred]
            if pred not in state and (found := visit(pred)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in edges:
        if node not in state and (found := visit(node)):
            return found
    return None


def wave_order(plan: ReleasePlan) -> list[str]:
    """Wave names in a dependency-respecting order, plan order among equals."""
    done: list[str] = []
    remaining = [w for w in plan.waves]
    while remaining:
        ready = [w for w in remaining if all(a in done for a in w.after)]
        if not ready:  # a cycle; validation reports it, ordering just stops here
            break
        done.append(ready[0].name)
        remaining.remove(ready[0])
    return done


def _shared_resources(plan: ReleasePlan) -> list[Problem]:
    """Targets that change a resource an earlier target changes, however each spells it."""
    first: dict[ResourceKey, int] = {}
    problems = []
    for i, (target, keys) in enumerate(plan_resource_keys(plan)):
        earlier = next((first[k] for k in keys if k in first), None)
        if earlier is not None:
            region = next((k.region for k in keys if k.region), "")
            where = "" if not region else f" in {region}"
            where = where.replace(DEFAULT_REGION, "the default region")
            problems.append(
                Problem(
                    f"targets[{i}]",
                    f"same resource as targets[{earlier}] ({target.resource}{where})",
                )
            )
        for key in keys:
            first.setdefault(key, i)
    return problems


def plan_problems(plan: ReleasePlan) -> list[Problem]:
    """Every cross-field problem of ``plan``; empty when the plan is sound."""
    problems: list[Problem] = []
    problems += _duplicates((t.name for t in plan.targets), "targets", "target")
    problems += _duplicates((w.name for w in plan.waves), "waves", "wave")
    problems += _shared_resources(plan)

    target_names = {t.name for t in plan.targets}
    wave_names = {w.name for w in plan.waves}
    owner: dict[str, str] = {}
    for i, wave in enumerate(plan.waves):
        where = f"waves[{i}]"
        for j, target in enumerate(wave.targets):
            if target not in target_names:
                problems.append(Problem(f"{where}.targets[{j}]", f"unknown target {target!r}"))
            elif target in owner:
                problems.append(
                    Problem(
                        f"{where}.targets[{j}]",
                        f"target {target!r} is already rolled out by wave {owner[target]!r}",
                    )
                )
            else:
                owner[target] = wave.name
        for j, pred in enumerate(wave.after):
            if pred == wave.name:
                problems.append(Problem(f"{where}.after[{j}]", "a wave cannot come after itself"))
            elif pred not in wave_names:
                problems.append(Problem(f"{where}.after[{j}]", f"unknown wave {pred!r}"))
        if plan.departments and wave.department not in plan.departments:
            problems.append(
                Problem(f"{where}.department", f"unknown department {wave.department!r}")
            )
        steps = wave.traffic
        for j in range(1, len(steps)):
            if steps[j] <= steps[j - 1]:
                problems.append(
                    Problem(
                        f"{where}.traffic[{j}]",
                        f"traffic steps must strictly increase ({steps[j]} after {steps[j - 1]})",
                    )
                )
        if not steps:
            problems.append(Problem(f"{where}.traffic", "traffic needs at least one step"))
        elif steps[-1] != 100:
            problems.append(Problem(f"{where}.traffic", "the last traffic step must be 100"))

    problems += [
        Problem(path, message)
        for path, message in job_problems([(w.jobs, w.traffic) for w in plan.waves], target_names)
    ]
    for i, declared in enumerate(plan.targets):
        if declared.name not in owner:
            problems.append(Problem(f"targets[{i}]", f"target {declared.name!r} is in no wave"))

    # Self-references and unknown waves were reported above; the cycle check skips them.
    edges = {w.name: [a for a in w.after if a in wave_names and a != w.name] for w in plan.waves}
    cycle = find_cycle(edges)
    if cycle:
        index = next(i for i, w in enumerate(plan.waves) if w.name == cycle[0])
        problems.append(
            Problem(
                f"waves[{index}].after",
                "waves depend on each other in a cycle: " + " -> ".join(reversed(cycle)),
            )
        )
    return problems
