"""mmengine metric: predictions -> nuScenes submission -> official DetectionEval (mAP, NDS)."""

from __future__ import annotations

from pathlib import Path

from mmengine.evaluator import BaseMetric

from perception.evaluation.detection import format_table, run_detection_eval, to_nuscenes_boxes, write_submission


class NuScenesDetectionMetric(BaseMetric):
    default_prefix = "nuscenes"

    def __init__(self, dataroot, version: str, eval_set: str, work_dir, modalities=("camera", "lidar", "radar")):
        super().__init__()
        self.dataroot, self.version, self.eval_set = str(dataroot), version, eval_set
        self.work_dir = Path(work_dir)
        self.modalities = tuple(modalities)

    def process(self, data_batch, data_samples) -> None:
        for d in data_samples:
            self.results.append((d["token"], to_nuscenes_boxes(d["token"], d["det"], d["T_global_ego"])))

    def compute_metrics(self, results) -> dict:
        out = self.work_dir / "val"
        path = out / "results_nusc.json"
        write_submission(path, dict(results), self.modalities)
        summary = run_detection_eval(self.dataroot, self.version, self.eval_set, path, out)
        print(format_table(summary), flush=True)
        return {"mAP": summary["mean_ap"], "NDS": summary["nd_score"]}
