"""Decoupled training with one process per stage on torch.distributed (gloo on CPU).

==================  ===========================================================================
``transport``       fixed-shape tensor messages between ranks, every wait bounded (:class:`RankTimeout`)
``launch``          one local process per rank, or a rank under torchrun; a failed rank is named
``program``         a rank's ops of one step: the registry's order on its stage, plus sends/receives
``stage_worker``    the per-rank loop: the ops of :mod:`sglab.exec.ops` on tensors from other ranks
``run``             :class:`DistRun`, :func:`train_distributed`, :class:`DistResult`
==================  ===========================================================================
"""

from sglab.dist.launch import RankContext, RankFailed, launch, run_from_env
from sglab.dist.run import DistResult, DistRun, FailAt, InjectedFault, train_distributed
from sglab.dist.stage_worker import RECORD_FIELDS, StageWorker, stage_worker
from sglab.dist.transport import RankTimeout, Transport

__all__ = ["RECORD_FIELDS", "DistResult", "DistRun", "FailAt", "InjectedFault", "RankContext", "RankFailed",
           "RankTimeout", "StageWorker", "Transport", "launch", "run_from_env", "stage_worker", "train_distributed"]
from sglab.dist.hardware_probe import ProbeResult, fit_latency_bandwidth, probe_hardware  # noqa: E402, F401
from sglab.dist.pipeline_worker import PipelineRun, PipelineWorker, pipeline_worker, worker_for  # noqa: E402, F401
from sglab.dist.run import DistRunDir, check_supported, merge_records  # noqa: E402, F401 (sglab.dist.outputs, .measured_trace)
from sglab.dist.stage_worker import WholeChainWorker  # noqa: E402, F401
