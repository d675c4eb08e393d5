"""The plots panel on its own, fed fake events."""

from app.panels.training_plots import TrainingPlots
from engine.events import MonitorReport, StepMetrics


def report(step, knn, baseline=False):
    return MonitorReport(step=step, epoch=0.0, baseline=baseline, knn_accuracy=knn, std=0.05,
                         std_reference=0.0884, effective_rank=40.0, dim=128,
                         backbone_rank=30.0, backbone_dim=128)


def test_plots_update_at_bounded_rate_with_baseline(qtbot):
    w = TrainingPlots()
    qtbot.addWidget(w)
    w.show()
    w.add_event(report(0, 0.186, baseline=True))
    for i in range(1, 501):
        w.add_event(StepMetrics(step=i, epoch=0.0, time=0.0, loss=5 - i / 200, lr=0.1,
                                images_per_sec=100.0))
    w.add_event(report(500, 0.56))
    assert w.point_count("loss") == 0  # not drawn per event ...
    qtbot.waitUntil(lambda: w.point_count("loss") == 500, timeout=2000)  # ... but by the timer
    assert w.point_count("knn") == 2
    assert w.baseline_line.isVisible() and abs(w.baseline_line.value() - 0.186) < 1e-9
    assert "18.6%" in w.baseline_line.label.toPlainText()
    assert "0.088" in w.ref_line.label.toPlainText()
    w.clear()
    assert w.point_count("loss") == 0 and not w.baseline_line.isVisible()


def test_replays_metrics_rows(qtbot):
    rows = [{"step": 0, "knn_accuracy": 0.2, "std": 0.07, "std_reference": 0.088,
             "effective_rank": 90, "backbone_rank": 60, "baseline": True},
            {"step": 1, "loss": 5.0}, {"step": 2, "loss": 4.0},
            {"step": 2, "knn_accuracy": 0.3, "std": 0.08, "effective_rank": 50,
             "backbone_rank": 40}]
    w = TrainingPlots()
    qtbot.addWidget(w)
    w.show()
    w.load_rows(rows)
    w.refresh()
    assert w.point_count("loss") == 2 and w.point_count("knn") == 2
    assert w.baseline_knn == 0.2


def test_method_metrics_get_their_own_curves(qtbot):
    w = TrainingPlots()
    qtbot.addWidget(w)
    w.show()
    assert w.method_plot is None
    for i in range(1, 11):
        w.add_event(StepMetrics(step=i, epoch=0.0, time=0.0, loss=1.0, lr=0.1,
                                images_per_sec=1.0,
                                extra={"invariance": 1.0 / i, "variance": 0.5}))
    w.refresh()
    assert w.method_plot is not None and w.method_plot.isVisible()
    assert w.point_count("extra:invariance") == 10 and w.point_count("extra:variance") == 10
    w.clear()
    assert "extra:invariance" not in w.curves and w.method_plot is None


def test_a_flat_monitor_curve_is_drawn_flat_not_zoomed_to_its_wobble(qtbot):
    """A run that does not learn repeats its monitor scores to the sixth digit; autoscaled
    to that wobble, a flat effective rank read as a steep fall."""
    w = TrainingPlots()
    qtbot.addWidget(w)
    w.resize(900, 600)
    w.show()
    for i, wobble in enumerate((1.5e-6, 0.0, 0.8e-6, 0.3e-6)):
        w.add_event(MonitorReport(step=100 * i, epoch=0.0, baseline=i == 0, knn_accuracy=0.3,
                                  std=0.0412 + wobble / 100, std_reference=0.0884,
                                  effective_rank=3.554186 + wobble, dim=128,
                                  backbone_rank=3.554186 + wobble, backbone_dim=128))
    w.refresh()
    qtbot.wait(50)
    (_, _), (lo, hi) = w.rank_plot.viewRange()
    assert hi - lo >= 1.0 and lo < 3.554186 < hi
    (_, _), (lo, hi) = w.std_plot.viewRange()
    assert hi - lo >= 0.005 and lo < 0.0412 < hi
    # a rank that does move is still autoscaled to its own range
    w.clear()
    for i, rank in enumerate((90.0, 40.0, 12.0)):
        w.add_event(MonitorReport(step=100 * i, epoch=0.0, baseline=i == 0, knn_accuracy=0.3,
                                  std=0.05, std_reference=0.0884, effective_rank=rank,
                                  dim=128, backbone_rank=rank, backbone_dim=128))
    w.refresh()
    qtbot.wait(50)
    (_, _), (lo, hi) = w.rank_plot.viewRange()
    assert lo <= 12.0 and 90.0 <= hi < 120.0
