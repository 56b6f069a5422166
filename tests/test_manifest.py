"""Manifest loading and validation: ``load_manifest`` with ``--set`` overrides, and ``winnow validate``."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from winnow.pipeline.manifest import STAGE_ORDER, ManifestError, Stages, apply_override, load_manifest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO_ROOT / "manifests").glob("*.yaml"))

WinnowCli = Callable[..., subprocess.CompletedProcess[str]]


def paths_override(demo: Path) -> str:
    return f"sources.0.paths=[{demo}/*.warc.gz]"


def base_manifest(demo: Path) -> dict[str, Any]:
    """A small valid manifest reading the demo WARC files."""
    return {
        "name": "t",
        "output": "out",
        "executor": {"kind": "local", "tasks": 2, "workers": 1},
        "sources": [{"name": "cc", "kind": "warc", "paths": [f"{demo}/*.warc.gz"], "crawl": "TEST-1"}],
        "stages": {"extract": {"timeout_s": 5}, "heuristics": {"c4": True}},
    }


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def assert_one_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2, no traceback, exactly one message line on stderr, containing every fragment."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{result.stderr}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


# ---------------------------------------------------------------- shipped manifests


@pytest.mark.parametrize("manifest", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_manifest_validates(
    manifest: Path, cli_demo_warcs: Path, tmp_path: Path, winnow_cli: WinnowCli
) -> None:
    """Every manifest in manifests/ validates once its inputs point at real files: web archives at the demo
    WARCs, document sources at small JSONL files (earlier runs named in ``dedup.against`` are dropped:
    tests/test_dedup_incremental.py validates against real ones)."""
    raw = yaml.safe_load(manifest.read_text())
    overrides = []
    for index, source in enumerate(raw["sources"]):
        if source["kind"] == "warc":
            overrides.append(f"sources.{index}.paths=[{cli_demo_warcs}/*.warc.gz]")
        else:
            document = tmp_path / f"{source['name']}.{source['kind']}"
            document.write_text('{"id": "1", "text": "a document"}\n')
            overrides.append(f"sources.{index}.paths=[{document}]")
    if "against:" in manifest.read_text():
        overrides.append("stages.dedup.against=[]")
    for index, classifier in enumerate(((raw.get("stages") or {}).get("quality") or {}).get("classifiers", [])):
        model = tmp_path / f"{classifier['name']}.bin"
        for kind, word in (("positive", "clear prose"), ("negative", "spam spam")):
            (tmp_path / f"{kind}.jsonl").write_text("".join(f'{{"text": "{word} {i}"}}\n' for i in range(20)))
        trained = winnow_cli(
            "classifier", "train", "-p", tmp_path / "positive.jsonl", "-n", tmp_path / "negative.jsonl", "-o", model,
            "--holdout", "0", "--no-progress",
        )  # fmt: skip
        assert trained.returncode == 0, trained.stderr
        overrides.append(f"stages.quality.classifiers.{index}.model={model}")
    decontam = (((raw.get("stages") or {}).get("heuristics") or {}).get("decontam") or {}).get("sets", [])
    for index, eval_set in enumerate(decontam):  # a small set with the named fields, long enough to give n-grams
        rows = tmp_path / f"{eval_set['name']}.jsonl"
        rows.write_text(json.dumps(dict.fromkeys(eval_set["fields"], " ".join(f"word{i}" for i in range(20)))) + "\n")
        overrides.append(f"stages.heuristics.decontam.sets.{index}.path={rows}")
    multilingual = ((raw.get("stages") or {}).get("heuristics") or {}).get("multilingual")
    if multilingual:  # a settings file in FineWeb-2's shape for each listed language
        configs = tmp_path / "fineweb2_configs"
        configs.mkdir()
        settings = {"language_score": 0.8, "dup_line_frac": 0.3, "dup_n_grams": [[5, 0.15]], "top_n_grams": [[2, 0.2]]}
        settings |= {"line_punct_thr": 0.1, "new_line_ratio": 0.3, "min_avg_word_length": 1, "max_avg_word_length": 10}
        settings |= {"max_non_alpha_words_ratio": 0.8, "stopwords": ["a", "b"]}
        for code in set(multilingual["languages"]) - set(multilingual.get("default_settings", [])):
            (configs / f"{code}.yml").write_text(yaml.safe_dump(settings))
        overrides.append(f"stages.heuristics.multilingual.configs={configs}")
    loaded = load_manifest(manifest, overrides)
    assert loaded.sources[0].paths == [overrides[0].split("=", 1)[1].strip("[]")]
    result = winnow_cli("validate", manifest, *(arg for o in overrides for arg in ("--set", o)))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert f"'{loaded.name}'" in result.stdout


def test_shipped_manifests_exist() -> None:
    """The shipped-manifest check above is not vacuous: the demo manifest is among them."""
    assert REPO_ROOT / "manifests" / "demo.yaml" in SHIPPED


# ---------------------------------------------------------------- invalid manifests through the CLI


def test_unknown_top_level_key(tmp_path: Path, cli_demo_warcs: Path, winnow_cli: WinnowCli) -> None:
    """A key far from every field lists the fields of its level."""
    data = base_manifest(cli_demo_warcs) | {"colour": "x"}
    path = write_yaml(tmp_path / "typo.yaml", data)
    line = assert_one_error(winnow_cli("validate", path), f"{path}: colour: unknown field")
    assert "fields here: name, output, work_dir, executor, shard_target_mb, intermediates, sources, stages" in line
    assert "did you mean" not in line


def test_unknown_stage(tmp_path: Path, cli_demo_warcs: Path, winnow_cli: WinnowCli) -> None:
    data = base_manifest(cli_demo_warcs)
    data["stages"] = {"dedupe": {}}
    path = write_yaml(tmp_path / "stage.yaml", data)
    assert_one_error(winnow_cli("validate", path), f"{path}: stages.dedupe: unknown field (did you mean `dedup`?)")


@pytest.mark.parametrize(
    ("where", "typo", "meant"),
    [
        ((), "outptu", "output"),
        (("sources", 0), "pahts", "paths"),
        (("executor",), "wokers", "workers"),
        (("stages", "extract", "language"), "min_scor", "min_score"),
        (("stages", "heuristics", "c4"), "min_num_sentence", "min_num_sentences"),
    ],
)
def test_near_miss_key_suggests_the_field(
    tmp_path: Path, cli_demo_warcs: Path, where: tuple[str | int, ...], typo: str, meant: str
) -> None:
    """A misspelt key at any level is named by its dotted path with the closest field of that level."""
    data = base_manifest(cli_demo_warcs)
    node: Any = data
    for key in where:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
        if node is True:  # `c4: true`
            node = data["stages"]["heuristics"]["c4"] = {}
    node[typo] = 1
    path = write_yaml(tmp_path / "m.yaml", data)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    dotted = ".".join(map(str, (*where, typo)))
    assert (
        str(info.value)
        == f"{path}: {dotted}: unknown field (did you mean `{meant}`?); `winnow schema` lists every field"
    )


def test_near_miss_key_through_set(cli_demo_warcs: Path, winnow_cli: WinnowCli) -> None:
    manifest = REPO_ROOT / "manifests" / "demo.yaml"
    result = winnow_cli("validate", manifest, "--set", paths_override(cli_demo_warcs), "--set", "sources.0.crawll=X")
    assert_one_error(result, str(manifest), "sources.0.crawll: unknown field (did you mean `crawl`?)")


def test_unknown_source_kind(tmp_path: Path, cli_demo_warcs: Path, winnow_cli: WinnowCli) -> None:
    data = base_manifest(cli_demo_warcs)
    data["sources"][0]["kind"] = "warcs"
    path = write_yaml(tmp_path / "kind.yaml", data)
    line = assert_one_error(
        winnow_cli("validate", path),
        f"{path}: sources.0.kind: unknown source kind 'warcs'; choose one of warc, jsonl, parquet, pdf "
        "(did you mean `warc`?)",
    )
    assert "Input tag" not in line


def test_missing_source_kind(tmp_path: Path, cli_demo_warcs: Path) -> None:
    data = base_manifest(cli_demo_warcs)
    del data["sources"][0]["kind"]
    path = write_yaml(tmp_path / "kind.yaml", data)
    with pytest.raises(ManifestError, match=r": sources\.0\.kind: missing: .*choose one of warc, jsonl, parquet, pdf$"):
        load_manifest(path)


def test_unknown_executor_kind(tmp_path: Path, cli_demo_warcs: Path) -> None:
    path = write_yaml(tmp_path / "m.yaml", base_manifest(cli_demo_warcs))
    with pytest.raises(ManifestError) as info:
        load_manifest(path, ["executor.kind=sllurm"])
    assert str(info.value).endswith(
        "executor.kind: unknown executor kind 'sllurm'; choose one of local, slurm, ray (did you mean `slurm`?)"
    )


def test_slurm_without_partition_names_the_field_as_written(
    tmp_path: Path, cli_demo_warcs: Path, winnow_cli: WinnowCli
) -> None:
    """The location is the path a user writes (executor.partition), not pydantic's (executor.slurm.partition)."""
    path = write_yaml(tmp_path / "m.yaml", base_manifest(cli_demo_warcs))
    line = assert_one_error(
        winnow_cli("validate", path, "--set", "executor.kind=slurm"),
        f"{path}: executor.partition: required field is missing (sbatch --partition)",
    )
    assert "slurm." not in line and "SlurmExecutor" not in line


@pytest.mark.parametrize(
    ("assignment", "where"),
    [
        ("sources.0.paths=[3]", "sources.0.paths.0: Input should be a valid string (got 3)"),
        ("sources.0.limit=0", "sources.0.limit: Input should be greater than or equal to 1 (got 0)"),
        (
            "stages.heuristics.gopher_repetition.top_n_grams=[[2, x]]",
            "stages.heuristics.gopher_repetition.top_n_grams.0.1:",
        ),
        (
            "stages.extract.url_filter=maybe",
            "stages.extract.url_filter: expected true, false or a mapping of its fields",
        ),
    ],
)
def test_locations_are_dotted_user_paths(tmp_path: Path, cli_demo_warcs: Path, assignment: str, where: str) -> None:
    """List indexes are numbers, and no union or discriminator tag (warc, local, function-...) appears."""
    path = write_yaml(tmp_path / "m.yaml", base_manifest(cli_demo_warcs))
    with pytest.raises(ManifestError) as info:
        load_manifest(path, [assignment])
    assert str(info.value).startswith(f"{path}: {where}"), str(info.value)


def test_wrong_type(tmp_path: Path, cli_demo_warcs: Path, winnow_cli: WinnowCli) -> None:
    """``executor: {tasks: many}`` (no ``kind``) names executor.tasks, not the union's discriminator."""
    data = base_manifest(cli_demo_warcs)
    data["executor"] = {"tasks": "many"}
    path = write_yaml(tmp_path / "type.yaml", data)
    line = assert_one_error(winnow_cli("validate", path), str(path), "executor.tasks")
    assert "integer" in line


def test_wrong_type_deep(tmp_path: Path, cli_demo_warcs: Path, winnow_cli: WinnowCli) -> None:
    data = base_manifest(cli_demo_warcs)
    data["stages"]["heuristics"] = {"gopher_quality": {"min_doc_words": "lots"}}
    path = write_yaml(tmp_path / "deep.yaml", data)
    assert_one_error(winnow_cli("validate", path), str(path), "stages.heuristics.gopher_quality.min_doc_words")


def test_missing_input_path(tmp_path: Path, cli_demo_warcs: Path, winnow_cli: WinnowCli) -> None:
    data = base_manifest(cli_demo_warcs)
    pattern = f"{tmp_path}/nothing/*.warc.gz"
    data["sources"][0]["paths"] = [f"{cli_demo_warcs}/*.warc.gz", pattern]
    path = write_yaml(tmp_path / "missing.yaml", data)
    line = assert_one_error(winnow_cli("validate", path), f"{path}: sources.0.paths.1: {pattern} matched no file")
    assert "relative" not in line  # an absolute path resolves against nothing


def test_relative_path_names_the_directory_it_resolves_against(
    tmp_path: Path, cli_demo_warcs: Path, winnow_cli: WinnowCli
) -> None:
    """A relative pattern is expanded from the current directory (not the manifest's folder), and says so."""
    (tmp_path / "data" / "demo").mkdir(parents=True)
    for warc in cli_demo_warcs.glob("*.warc.gz"):
        (tmp_path / "data" / "demo" / warc.name).symlink_to(warc)
    data = base_manifest(cli_demo_warcs)
    data["sources"][0]["paths"] = ["data/demo/*.warc.gz"]
    path = write_yaml(tmp_path / "m.yaml", data)
    assert winnow_cli("validate", path, cwd=tmp_path).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert_one_error(
        winnow_cli("validate", path, cwd=elsewhere),
        f"{path}: sources.0.paths.0: data/demo/*.warc.gz matched no file "
        f"(relative paths resolve against {elsewhere.resolve()})",
    )


def test_single_path_is_a_list_of_one(tmp_path: Path, cli_demo_warcs: Path, winnow_cli: WinnowCli) -> None:
    """`paths: one/file` and `--set sources.0.paths=one/file` mean a list of that one path."""
    first, second = sorted(cli_demo_warcs.glob("*.warc.gz"))[:2]
    data = base_manifest(cli_demo_warcs)
    data["sources"][0]["paths"] = str(first)
    path = write_yaml(tmp_path / "m.yaml", data)
    assert load_manifest(path).sources[0].paths == [str(first)]
    assert load_manifest(path, [f"sources.0.paths={second}"]).sources[0].paths == [str(second)]
    result = winnow_cli("validate", path, "--set", f"sources.0.paths={second}")
    assert result.returncode == 0, result.stderr


def test_message_keeps_brackets(tmp_path: Path, cli_demo_warcs: Path, winnow_cli: WinnowCli) -> None:
    """Text from the manifest is printed verbatim, never read as console markup (``[/x]``, ``[bold]``)."""
    data = base_manifest(cli_demo_warcs)
    pattern = f"{tmp_path}/[/x]/[bold]*.warc.gz"
    data["sources"][0]["paths"] = [pattern]
    path = write_yaml(tmp_path / "brackets.yaml", data)
    assert_one_error(winnow_cli("validate", path), str(path), pattern)


def test_invalid_yaml(tmp_path: Path, winnow_cli: WinnowCli) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\noutput: out\nsources: [{name: cc, kind: warc\nstages: {}\n")
    line = assert_one_error(winnow_cli("validate", path), str(path), "not valid YAML")
    assert re.search(r"line \d+, column \d+", line), line


def test_not_a_mapping(tmp_path: Path, winnow_cli: WinnowCli) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- name: x\n")
    assert_one_error(winnow_cli("validate", path), str(path), "mapping")


def test_missing_manifest_file(tmp_path: Path, winnow_cli: WinnowCli) -> None:
    path = tmp_path / "absent.yaml"
    assert_one_error(winnow_cli("validate", path), str(path), "no such manifest file")


def test_set_without_equals_is_a_clear_error(cli_demo_warcs: Path, winnow_cli: WinnowCli) -> None:
    manifest = REPO_ROOT / "manifests" / "demo.yaml"
    result = winnow_cli("validate", manifest, "--set", paths_override(cli_demo_warcs), "--set", "executor.tasks")
    assert_one_error(result, "executor.tasks", "dotted.path=value")


def test_set_bad_list_index(cli_demo_warcs: Path, winnow_cli: WinnowCli) -> None:
    manifest = REPO_ROOT / "manifests" / "demo.yaml"
    result = winnow_cli("validate", manifest, "--set", paths_override(cli_demo_warcs), "--set", "sources.3.crawl=X")
    assert_one_error(result, "sources.3")


def test_set_value_invalid_for_schema(cli_demo_warcs: Path, winnow_cli: WinnowCli) -> None:
    """An override is validated like the file: the error names the manifest and the overridden field."""
    manifest = REPO_ROOT / "manifests" / "demo.yaml"
    result = winnow_cli("validate", manifest, "--set", paths_override(cli_demo_warcs), "--set", "executor.tasks=many")
    assert_one_error(result, str(manifest), "executor.tasks")


def test_set_value_invalid_yaml(cli_demo_warcs: Path, winnow_cli: WinnowCli) -> None:
    manifest = REPO_ROOT / "manifests" / "demo.yaml"
    result = winnow_cli("validate", manifest, "--set", paths_override(cli_demo_warcs), "--set", "output=[a")
    assert_one_error(result, "output", "not valid YAML")


def test_run_refuses_invalid_manifest_before_writing(
    tmp_path: Path, cli_demo_warcs: Path, winnow_cli: WinnowCli
) -> None:
    """``winnow run`` validates like ``validate`` (exit 2, one line) and creates no run folder."""
    data = base_manifest(cli_demo_warcs)
    data["output"] = str(tmp_path / "out")
    data["stages"] = {"dedupe": {}}
    path = write_yaml(tmp_path / "bad-run.yaml", data)
    assert_one_error(winnow_cli("run", path, "--no-progress"), str(path), "stages.dedupe")
    assert not (tmp_path / "out").exists()


def test_heuristics_without_extract_is_a_config_error(
    tmp_path: Path, cli_demo_warcs: Path, winnow_cli: WinnowCli
) -> None:
    """A stage whose upstream is switched off is refused at validation, naming the stages."""
    data = base_manifest(cli_demo_warcs)
    data["stages"] = {"extract": None}
    path = write_yaml(tmp_path / "no-extract.yaml", data)
    assert_one_error(winnow_cli("validate", path), str(path), "stages", "enable stages.extract")


def test_unwritable_output_is_a_clear_error(tmp_path: Path, cli_demo_warcs: Path, winnow_cli: WinnowCli) -> None:
    """An output folder that cannot be created exits 2 with one line naming it, not a traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    path = write_yaml(tmp_path / "m.yaml", base_manifest(cli_demo_warcs))
    result = winnow_cli("run", path, "--no-progress", "--set", f"output={blocker}")
    assert_one_error(result, "cannot create the run folder", str(blocker))


# ---------------------------------------------------------------- overrides


def test_overrides_change_the_loaded_manifest(tmp_path: Path, cli_demo_warcs: Path) -> None:
    path = write_yaml(tmp_path / "m.yaml", base_manifest(cli_demo_warcs))
    original = path.read_text()
    m = load_manifest(
        path,
        [
            "output=elsewhere",  # scalar
            "executor.tasks=8",  # nested, parsed as an int
            "sources.0.crawl=CC-MAIN-2024-33",  # list index
            "stages.heuristics.gopher_quality.min_doc_words=10",  # deep, key absent from the file
            "stages.heuristics.c4=false",  # YAML boolean into a switchable filter
            "stages.extract.language.keep=[en, de]",  # YAML flow list
            "stages.extract.language.min_score=0.5",  # YAML float
        ],
    )
    assert m.output == "elsewhere"
    assert m.run_dir == Path("elsewhere") / "t"
    assert m.executor.tasks == 8
    assert m.sources[0].crawl == "CC-MAIN-2024-33"
    assert m.stages.heuristics.gopher_quality.min_doc_words == 10
    assert m.stages.heuristics.c4.enabled is False
    assert m.stages.extract.language.keep == ["en", "de"]
    assert m.stages.extract.language.min_score == 0.5
    assert path.read_text() == original, "overrides must not touch the manifest file"


def test_override_reaches_into_a_switch_written_as_a_bool(tmp_path: Path, cli_demo_warcs: Path) -> None:
    """`c4: true` in the file still takes `--set stages.heuristics.c4.min_num_sentences=3`."""
    data = base_manifest(cli_demo_warcs)
    data["stages"] = {"heuristics": {"c4": True}}
    path = write_yaml(tmp_path / "switch.yaml", data)
    loaded = load_manifest(path, ["stages.heuristics.c4.min_num_sentences=3"])
    assert loaded.stages.heuristics is not None
    assert loaded.stages.heuristics.c4.enabled and loaded.stages.heuristics.c4.min_num_sentences == 3


def test_no_overrides_keeps_file_values(tmp_path: Path, cli_demo_warcs: Path) -> None:
    m = load_manifest(write_yaml(tmp_path / "m.yaml", base_manifest(cli_demo_warcs)))
    assert (m.output, m.executor.tasks, m.sources[0].crawl) == ("out", 2, "TEST-1")


def test_override_value_is_yaml(tmp_path: Path, cli_demo_warcs: Path) -> None:
    """Only the first '=' splits; the rest is one YAML value (quotes keep strings, null disables a stage)."""
    path = write_yaml(tmp_path / "m.yaml", base_manifest(cli_demo_warcs))
    m = load_manifest(path, ["sources.0.crawl=a=b", "name='007'", "stages.heuristics=null"])
    assert m.sources[0].crawl == "a=b"
    assert m.name == "007"
    assert m.stages.heuristics is None


def test_override_paths_make_a_manifest_valid(tmp_path: Path, cli_demo_warcs: Path) -> None:
    """The point of --set: a shipped manifest pointed at the user's data without editing it."""
    data = base_manifest(cli_demo_warcs)
    data["sources"][0]["paths"] = [f"{tmp_path}/missing/*.warc.gz"]
    path = write_yaml(tmp_path / "m.yaml", data)
    with pytest.raises(ManifestError, match=r"sources\.0\.paths\.0: .* matched no file"):
        load_manifest(path)
    assert load_manifest(path, [paths_override(cli_demo_warcs)]).sources[0].paths == [f"{cli_demo_warcs}/*.warc.gz"]


def test_executor_kind_defaults_to_local(tmp_path: Path, cli_demo_warcs: Path) -> None:
    data = base_manifest(cli_demo_warcs)
    data["executor"] = {"tasks": 3}
    m = load_manifest(write_yaml(tmp_path / "m.yaml", data))
    assert (m.executor.kind, m.executor.tasks) == ("local", 3)


@pytest.mark.parametrize("assignment", ["executor.tasks", "=3", "executor..tasks=3"])
def test_bad_set_raises(assignment: str) -> None:
    with pytest.raises(ManifestError, match="--set"):
        apply_override({"executor": {"tasks": 1}}, assignment)


def test_overrides_validated_with_file_name(tmp_path: Path, cli_demo_warcs: Path) -> None:
    path = write_yaml(tmp_path / "m.yaml", base_manifest(cli_demo_warcs))
    with pytest.raises(ManifestError) as info:
        load_manifest(path, ["executor.workers=0"])
    message = str(info.value)
    assert str(path) in message and "executor.workers" in message


# ---------------------------------------------------------------- winnow schema


def schema_tables(text: str) -> dict[str, list[list[str]]]:
    """The sections of `winnow schema` by path, each as rows of [field, type, default, meaning] cells."""
    tables: dict[str, list[list[str]]] = {}
    for block in text.split("\n\n")[1:]:
        header, columns, *rows = block.splitlines()
        assert columns.split() == ["field", "type", "default", "meaning"], block
        starts = [columns.index(name) for name in ("type", "default", "meaning")]
        cells = [[row[a:b].strip() for a, b in zip([0, *starts], [*starts, None], strict=True)] for row in rows]
        tables[header.split(" — ")[0]] = cells
    return tables


def test_schema_is_a_readable_reference(winnow_cli: WinnowCli) -> None:
    """A table per section (top level, each source and executor kind, each stage and the mappings inside it),
    one row per field with type, default and the field's description."""
    result = winnow_cli("schema")
    assert result.returncode == 0, result.stderr
    tables = schema_tables(result.stdout)
    expected = {"(top level)", "sources.<i> (kind: warc)", "sources.<i> (kind: jsonl or parquet)"}
    expected |= {"sources.<i> (kind: pdf)", "executor (kind: local)", "executor (kind: slurm)", "executor (kind: ray)"}
    expected |= {"stages", "stages.extract.language", "stages.quality.classifiers.<i>", "stages.mix.swarm.results"}
    expected |= {f"stages.{stage}" for stage in STAGE_ORDER}
    assert expected <= set(tables), sorted(expected - set(tables))
    for stage in STAGE_ORDER:
        model = Stages.model_fields[stage].annotation.__args__[0]  # XConfig | None
        assert [row[0] for row in tables[f"stages.{stage}"]] == list(model.model_fields), stage
    slurm = {row[0]: row for row in tables["executor (kind: slurm)"]}
    assert slurm["partition"] == ["partition", "str", "required", "sbatch --partition"]
    assert slurm["tasks"] == ["tasks", "int, >= 1", "2", "number of tasks (array elements) per stage"]
    extract = {row[0]: row for row in tables["stages.extract"]}
    assert extract["focus"][1:3] == ["recall | balanced | precision", "recall"]
    warc = {row[0]: row for row in tables["sources.<i> (kind: warc)"]}
    assert warc["paths"][1] == "list[str] | str"
    language = {row[0]: row for row in tables["stages.extract.language"]}
    assert language["keep"][1:3] == ["list[str] | null", "[en]"]


def test_schema_json_is_the_json_schema(winnow_cli: WinnowCli) -> None:
    """`--json` keeps the JSON Schema for tools; a path list takes a single string there too."""
    result = winnow_cli("schema", "--json")
    assert result.returncode == 0, result.stderr
    paths = json.loads(result.stdout)["$defs"]["WarcSource"]["properties"]["paths"]
    assert {"type": "string"} in paths["anyOf"]
