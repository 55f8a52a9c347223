"""PGTune @7caef27c as roles/postgres/tuning.py computes it: controls.md §6.1's golden vectors
(PGTune run under node: PG 16, Linux, SSD, mid_ram), STET's 8 GB / 4 CPU SSD host, the rules."""

from __future__ import annotations

import pytest

from roles.postgres.tuning import Machine, format_kb, tune, wal_buffers

GB = 1024 * 1024

#: controls.md §6.1: RAM, type, CPUs -> max_connections, shared_buffers, effective_cache_size,
#: maintenance_work_mem, wal_buffers, work_mem, huge_pages, and the four parallel settings.
GOLDEN = [
    (2, "web", 1, "200", "512MB", "1536MB", "128MB", "16MB", "4MB", "off", None),
    (4, "web", 2, "200", "1GB", "3GB", "256MB", "16MB", "5041kB", "off", None),
    (8, "web", 4, "200", "2GB", "6GB", "512MB", "16MB", "10280kB", "try", ("4", "2", "4", "2")),
    (16, "oltp", 8, "300", "4GB", "12GB", "1GB", "16MB", "13617kB", "try", ("8", "4", "8", "4")),
    (32, "mixed", 16, "100", "8GB", "24GB", "2GB", "16MB", "36157kB", "try",
     ("16", "4", "16", "4")),
]
PARALLEL = ("max_worker_processes", "max_parallel_workers_per_gather", "max_parallel_workers",
            "max_parallel_maintenance_workers")


def golden_machine(ram: int, workload: str, cpus: int) -> Machine:
    return Machine(ram * GB, cpus, "ssd", workload, version=16)


@pytest.mark.parametrize(("ram", "workload", "cpus", "connections", "shared", "cache",
                          "maintenance", "wal", "work", "huge", "parallel"), GOLDEN)
def test_golden_vector_memory_and_connections(ram: int, workload: str, cpus: int,
                                              connections: str, shared: str, cache: str,
                                              maintenance: str, wal: str, work: str, huge: str,
                                              parallel: tuple[str, ...] | None) -> None:
    settings = tune(golden_machine(ram, workload, cpus))

    assert (settings["max_connections"], settings["shared_buffers"],
            settings["effective_cache_size"], settings["maintenance_work_mem"],
            settings["wal_buffers"], settings["work_mem"], settings["huge_pages"]) == (
        connections, shared, cache, maintenance, wal, work, huge)


@pytest.mark.parametrize(("ram", "workload", "cpus", "parallel"),
                         [(row[0], row[1], row[2], row[10]) for row in GOLDEN])
def test_golden_vector_parallel_workers(ram: int, workload: str, cpus: int,
                                        parallel: tuple[str, ...] | None) -> None:
    settings = tune(golden_machine(ram, workload, cpus))

    if parallel is None:
        assert not set(PARALLEL) & set(settings)
    else:
        assert tuple(settings[name] for name in PARALLEL) == parallel


@pytest.mark.parametrize(("ram", "workload", "cpus"), [row[:3] for row in GOLDEN])
def test_golden_vector_settings_every_row_shares(ram: int, workload: str, cpus: int) -> None:
    settings = tune(golden_machine(ram, workload, cpus))
    wal = ("2GB", "8GB") if workload == "oltp" else ("1GB", "4GB")

    assert (settings["random_page_cost"], settings["effective_io_concurrency"],
            settings["min_wal_size"], settings["max_wal_size"],
            settings["checkpoint_completion_target"], settings["default_statistics_target"],
            settings["jit"], settings["wal_compression"]) == (
        "1.1", "200", *wal, "0.9", "100", "off", "lz4")


def test_the_32_gb_row_gives_autovacuum_work_mem_2gb() -> None:
    assert tune(golden_machine(32, "mixed", 16))["autovacuum_work_mem"] == "2GB"


def test_stet_host_8_gb_4_cpus_ssd_web_is_the_golden_row() -> None:
    settings = tune(Machine(8 * GB, 4, "ssd", "web", version=15))

    assert {name: settings[name] for name in ("shared_buffers", "effective_cache_size",
                                              "maintenance_work_mem", "work_mem",
                                              "huge_pages", "max_worker_processes")} == {
        "shared_buffers": "2GB", "effective_cache_size": "6GB",
        "maintenance_work_mem": "512MB", "work_mem": "10280kB", "huge_pages": "try",
        "max_worker_processes": "4"}


def test_stet_host_giving_half_its_ram_and_pgbouncer_sized_connections() -> None:
    settings = tune(Machine(4 * GB, 4, "ssd", "web", connections=60, version=15))

    # (4194304 - 1048576) / ((60 + 4) * 3) = 16384 kB exactly
    assert (settings["shared_buffers"], settings["max_connections"], settings["work_mem"],
            settings["huge_pages"]) == ("1GB", "60", "16MB", "off")


def test_data_warehouse_gets_more_maintenance_memory_statistics_and_no_jit() -> None:
    settings = tune(Machine(16 * GB, 8, "ssd", "dw"))

    assert (settings["maintenance_work_mem"], settings["default_statistics_target"],
            settings["random_page_cost"], settings["max_parallel_workers_per_gather"],
            "jit" in settings) == ("2GB", "500", "4", "4", False)


def test_data_warehouse_per_gather_is_not_capped_at_4() -> None:
    assert tune(Machine(64 * GB, 16, "ssd", "dw"))["max_parallel_workers_per_gather"] == "8"


@pytest.mark.parametrize(("disk", "cost", "concurrency"), [
    ("hdd", "4", "2"), ("ssd", "1.1", "200"), ("san", "1.1", "300"), ("nvme", "1.1", "1000")])
def test_disk_kind_sets_page_cost_and_io_concurrency(disk: str, cost: str,
                                                     concurrency: str) -> None:
    settings = tune(Machine(8 * GB, 4, disk))

    assert (settings["random_page_cost"], settings["effective_io_concurrency"]) == (
        cost, concurrency)


def test_maintenance_work_mem_is_capped_at_8gb() -> None:
    assert tune(Machine(512 * GB, 64, "ssd", "dw"))["maintenance_work_mem"] == "8GB"


@pytest.mark.parametrize(("cpus", "workers"), [(16, "4"), (32, "5"), (8, None)])
def test_autovacuum_workers_grow_from_16_cpus(cpus: int, workers: str | None) -> None:
    assert tune(Machine(64 * GB, cpus)).get("autovacuum_max_workers") == workers


@pytest.mark.parametrize(("version", "compression"), [(14, "on"), (15, "lz4"), (17, "lz4")])
def test_wal_compression_is_lz4_from_postgresql_15(version: int, compression: str) -> None:
    assert tune(Machine(8 * GB, 4, version=version))["wal_compression"] == compression


def test_postgresql_18_uses_io_uring() -> None:
    assert tune(Machine(8 * GB, 4, version=18))["io_method"] == "io_uring"
    assert "io_method" not in tune(Machine(8 * GB, 4, version=17))


@pytest.mark.parametrize(("shared", "wal"), [
    (524288, 15728), (500000, 15000), (400000, 12000), (16 * GB, 16384), (512, 32)])
def test_wal_buffers_rules(shared: int, wal: int) -> None:
    # 3% of shared_buffers; 14MB..16MB rounds up to 16MB; capped at 16MB; at least 32kB
    assert wal_buffers(shared) == (16384 if 14336 <= wal <= 16384 else wal)


@pytest.mark.parametrize(("kb", "text"), [(2 * GB, "2GB"), (1536 * 1024, "1536MB"),
                                           (10280, "10280kB"), (4096, "4MB")])
def test_values_are_formatted_as_pgtune_does(kb: int, text: str) -> None:
    assert format_kb(kb) == text


def test_an_odd_memory_size_is_formatted_in_kb() -> None:
    assert tune(Machine(3 * GB + 1000, 2))["shared_buffers"] == "786682kB"


def test_the_desktop_workload_is_not_offered() -> None:
    with pytest.raises(ValueError, match="desktop"):
        Machine(8 * GB, 4, workload="desktop")

