"""Checks a manifest needs beyond its own text, made before anything runs: other runs' dedup indexes, model
files, decontamination's evaluation sets, FineWeb-2's language settings, rephrase templates, the mix's tokenizer,
swarm result files.

Each check imports what it reads only when the manifest asks for it, so ``winnow validate`` and the start of
``winnow run`` do not load the stages' libraries (datatrove, fastText, tokenizers, openai).
"""

from __future__ import annotations

from pathlib import Path

from winnow.pipeline.manifest import Manifest, ManifestError


def preflight(manifest: Manifest, where: str) -> None:
    """Checks a manifest needs beyond its own text (other runs' files); raises ManifestError naming the field."""
    dedup = manifest.stages.dedup
    if dedup is not None and dedup.against:
        from winnow.filters.dedup_index import AgainstIndexError, check_against

        try:
            check_against(dedup)
        except AgainstIndexError as exc:
            raise ManifestError(f"{where}: stages.dedup.against: {exc}") from None
    extract = manifest.stages.extract
    if extract is not None and extract.language.model:  # language ID: the same model checks, any labels
        from winnow.filters.classifier_score import ModelError, check_structure

        try:
            check_structure(Path(extract.language.model))
        except ModelError as exc:
            raise ManifestError(f"{where}: stages.extract.language.model: {exc}") from None
    decontam = manifest.stages.heuristics.decontam if manifest.stages.heuristics else None
    if decontam is not None:  # each set read as the stage will: missing, empty, a field not there
        from winnow.filters.decontam import EvalSetError, check_sets

        try:
            check_sets(decontam)
        except EvalSetError as exc:
            field = f"stages.heuristics.decontam.sets[{exc.index}].{exc.field}"
            raise ManifestError(f"{where}: {field}: {exc}") from None
    multilingual = manifest.stages.heuristics.multilingual if manifest.stages.heuristics else None
    if multilingual is not None:  # the settings files parsed, the listed languages' tokenizers installed
        from winnow.filters.multilingual import LanguageConfigError, check

        try:
            check(multilingual, manifest.stages.heuristics.tokenizer)
        except LanguageConfigError as exc:
            raise ManifestError(f"{where}: stages.heuristics.multilingual.{exc.field}: {exc}") from None
    rephrase = manifest.stages.rephrase
    if rephrase is not None:
        from winnow.pipeline.rephrase.templates import TemplateError, load_templates

        try:
            templates = load_templates(rephrase.templates)
        except TemplateError as exc:
            raise ManifestError(f"{where}: stages.rephrase.templates: {exc}") from None
        for i, route in enumerate(rephrase.routes):
            unknown = [t for t in route.templates if t not in templates]
            if unknown:
                field = f"stages.rephrase.routes[{i}].templates"
                raise ManifestError(f"{where}: {field}: unknown {unknown} (known: {', '.join(sorted(templates))})")
    mix = manifest.stages.mix
    if mix is not None and mix.tokenizer:
        from winnow.mixers.tokens import TokenizerError, load_tokenizer

        try:
            load_tokenizer(mix.tokenizer)
        except TokenizerError as exc:
            raise ManifestError(f"{where}: stages.mix.tokenizer: {exc}") from None
    if mix is not None and mix.swarm.results:
        for field in ("ratios", "metrics"):
            if not Path(getattr(mix.swarm.results, field)).is_file():
                raise ManifestError(f"{where}: stages.mix.swarm.results.{field}: no such file")
    classifiers = manifest.stages.quality.classifiers if manifest.stages.quality else []
    if classifiers:
        from winnow.filters.classifier_score import ModelError, check_model

        for i, classifier in enumerate(classifiers):
            try:
                check_model(classifier.model, classifier.label)
            except ModelError as exc:
                raise ManifestError(f"{where}: stages.quality.classifiers[{i}].model: {exc}") from None
