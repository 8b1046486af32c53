"""PipeDream/DAPPLE graph.txt import on small files written here, and its errors."""

import pytest

from sglab.costprofile import CostProfile, ProfileError
from sglab.profiling import import_graph_txt
from sglab.profiling.graphtxt import balanced_boundaries

# A 6-layer net with a skip connection node2 -> node5, listed out of order as PipeDream does.
GRAPH = """\
node3 -- ReLU() -- forward_compute_time=0.500, backward_compute_time=1.000, activation_size=4000.0, parameter_size=0.000
node1 -- Input0 -- forward_compute_time=0.000, backward_compute_time=0.000, activation_size=1000.0, parameter_size=0.000
node2 -- Linear(in_features=250, out_features=1000, bias=True) -- forward_compute_time=2.000, backward_compute_time=4.000, activation_size=4000.0, parameter_size=1004000.000
node4 -- Linear(in_features=1000, out_features=1000, bias=True) -- forward_compute_time=3.000, backward_compute_time=6.000, activation_size=4000.0, parameter_size=4004000.000
node5 -- Add() -- forward_compute_time=0.250, backward_compute_time=0.250, activation_size=4000.0, parameter_size=0.000
node6 -- Linear(in_features=1000, out_features=10, bias=True) -- forward_compute_time=1.000, backward_compute_time=2.000, activation_size=40.0, parameter_size=40040.000
\tnode1 -- node2
\tnode2 -- node3
\tnode3 -- node4
\tnode4 -- node5
\tnode2 -- node5
\tnode5 -- node6
"""


@pytest.fixture
def graph(tmp_path):
    path = tmp_path / "mlp" / "graph.txt"
    path.parent.mkdir()
    path.write_text(GRAPH)
    return path


def test_import_balanced_into_two_stages(graph, tmp_path):
    profile = import_graph_txt(graph, batch_size=32, stages=2)
    assert profile.model["stage_nodes"] == [["node1", "node2", "node3"], ["node4", "node5", "node6"]]
    s0, s1 = profile.stages
    assert s0.times_ns == {"F": 2_500_000, "B": 5_000_000, "U": 0}  # ms -> ns; U is not in graph.txt
    assert s1.times_ns == {"F": 4_250_000, "B": 8_250_000, "U": 0}
    # interface 0 carries node3's output and, through the skip, node2's
    assert s0.activation_bytes == s0.gradient_bytes == 8000
    assert s1.activation_bytes == 40
    assert (s0.parameter_bytes, s1.parameter_bytes) == (1_004_000, 4_044_040)
    m = profile.measurement
    assert (m.source, m.batch_size, m.repeats) == ("pipedream_graph", 32, 0) and "U is not in graph.txt" in m.notes
    assert profile.model["name"] == "mlp" and profile.model["num_layers"] == 6
    assert CostProfile.load(profile.save(tmp_path / "p.json")) == profile


def test_import_at_given_boundaries(graph):
    by_id = import_graph_txt(graph, batch_size=8, boundaries=["node4", "node6"])
    by_position = import_graph_txt(graph, batch_size=8, boundaries=[3, 5])
    assert by_id.model["stage_nodes"] == by_position.model["stage_nodes"] == [
        ["node1", "node2", "node3"], ["node4", "node5"], ["node6"]]
    assert [s.activation_bytes for s in by_id.stages] == [8000, 4000, 40]


def test_import_uses_the_files_stage_ids(tmp_path):
    lines = GRAPH.splitlines()
    stage_of = {"node1": 0, "node2": 0, "node3": 0, "node4": 1, "node5": 1, "node6": 2}
    tagged = [f"{line} -- stage_id={stage_of[line.split()[0]]}" if not line.startswith("\t") else line for line in lines]
    path = tmp_path / "graph.txt"
    path.write_text("\n".join(tagged) + "\n")
    profile = import_graph_txt(path, batch_size=8)
    assert profile.num_stages == 3 and profile.stages[2].times_ns["F"] == 1_000_000


def test_balanced_boundaries_minimise_the_largest_stage():
    assert balanced_boundaries([5, 1, 1, 1, 5], 3) == [0, 1, 4]
    assert balanced_boundaries([1, 1, 1, 1], 4) == [0, 1, 2, 3]
    assert balanced_boundaries([3, 3], 1) == [0]


MALFORMED_GRAPHS = [
    (GRAPH.replace("backward_compute_time=4.000, ", ""), r"line 3: field 'backward_compute_time' is missing"),
    (GRAPH.replace("forward_compute_time=3.000", "forward_compute_time=fast"), r"line 4: field 'forward_compute_time' must be a number"),
    (GRAPH.replace("activation_size=40.0", "activation_size=-40.0"), r"line 6: field 'activation_size' must be >= 0"),
    (GRAPH + "\tnode6 -- node9\n", r"names node 'node9', which has no node line"),
    (GRAPH + "\tnode6 -- node2\n", r"cycle"),
    (GRAPH + "this is not a graph line\n", r"line 13: neither a node line"),
    (GRAPH + GRAPH.splitlines()[0] + "\n", r"node 'node3' is defined twice"),
    ("", r"no node lines"),
]


@pytest.mark.parametrize("text, message", MALFORMED_GRAPHS, ids=[m for _, m in MALFORMED_GRAPHS])
def test_malformed_graphs_are_rejected_naming_the_line(tmp_path, text, message):
    path = tmp_path / "graph.txt"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message):
        import_graph_txt(path, batch_size=8, stages=2)


def test_grouping_errors(graph):
    with pytest.raises(ProfileError, match="carry no stage_id"):
        import_graph_txt(graph, batch_size=8)
    with pytest.raises(ProfileError, match="cannot cut 6 layers into 7"):
        import_graph_txt(graph, batch_size=8, stages=7)
    with pytest.raises(ProfileError, match="boundaries must be increasing"):
        import_graph_txt(graph, batch_size=8, boundaries=[4, 2])
    with pytest.raises(ProfileError, match="not a node id"):
        import_graph_txt(graph, batch_size=8, boundaries=["node42"])
    with pytest.raises(ProfileError, match="batch_size must be >= 1"):
        import_graph_txt(graph, batch_size=0, stages=2)
    with pytest.raises(ProfileError, match="no such graph.txt"):
        import_graph_txt(graph.parent / "nope.txt", batch_size=8, stages=2)
