"""The command-line tools, one module per command (console scripts ``promptfusion-*`` in pyproject.toml;
``tools/*.py`` run the same ``main`` from a checkout). Each parses its arguments and calls the library:

    promptfusion-demo           perception.cli.demo           the whole system on the demo world, with pictures
    promptfusion-train          perception.cli.train          training with mmengine (torchrun for several GPUs)
    promptfusion-test           perception.cli.test           the devkit's DetectionEval (perception.evaluation.run)
    promptfusion-replay         perception.cli.replay         a drive log through the Pipeline (perception.replay)
    promptfusion-export         perception.cli.export         ONNX export with an onnxruntime round trip
    promptfusion-make-synthetic perception.cli.make_synthetic the synthetic world (perception.sources.synthetic)
    promptfusion-to-bag         perception.cli.to_bag         a scene as a rosbag2 drive log (sources.bag_writer)
    promptfusion-make-prompts   perception.cli.make_prompts   the referring prompts of a dataroot
    promptfusion-world-report   perception.cli.world_report   cue probes and realism statistics of a dataroot
    promptfusion-probe-text     perception.language.probe     what the text encoder separates
    promptfusion-node           ros_nodes.fusion_node         the live ROS 2 node
    promptfusion-player         ros_nodes.player              a drive log played onto ROS 2 topics
"""
