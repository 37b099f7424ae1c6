from gateway.prometheus import Metric, render


def test_render_counters_gauges_and_labels() -> None:
    text = render([
        Metric.single("x_total", "counter", "Things.", 3),
        Metric("depth", "gauge", "Depth per lane.", {(("lane", 'a"b'),): 1.5, (("lane", "c"),): 0}),
    ])
    assert text == (
        "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n"
        '# HELP depth Depth per lane.\n# TYPE depth gauge\ndepth{lane="a\\"b"} 1.5\ndepth{lane="c"} 0\n'
    )
