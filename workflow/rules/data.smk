# Fetch the stacks into resources/ and unpack them into slice arrays.


rule fetch_stack:
    output:
        stack="resources/{stack}.tif",
        record="resources/{stack}.json",
    log:
        "resources/logs/fetch_stack/{stack}.log",
    conda:
        "../envs/cellseg.yaml"
    params:
        sources=lambda w: DATA[w.stack],
        kind=lambda w: "labels" if w.stack == "train_labels" else "images",
        sha256=expected_hashes,
        timeout=DATA["download_timeout"],
        retries=DATA["download_retries"],
    script:
        "../scripts/fetch_stack.py"


rule unpack_training_stack:
    input:
        images="resources/train_images.tif",
        images_record="resources/train_images.json",
        labels="resources/train_labels.tif",
        labels_record="resources/train_labels.json",
    output:
        images="resources/unpacked/train_images.npy",
        labels="resources/unpacked/train_labels.npy",
        manifest="resources/unpacked/train_slices.tsv",
    log:
        "resources/logs/unpack_training_stack.log",
    conda:
        "../envs/cellseg.yaml"
    script:
        "../scripts/unpack_stack.py"


rule unpack_test_stack:
    input:
        images="resources/test_images.tif",
        images_record="resources/test_images.json",
    output:
        images="resources/unpacked/test_images.npy",
        manifest="resources/unpacked/test_slices.tsv",
    log:
        "resources/logs/unpack_test_stack.log",
    conda:
        "../envs/cellseg.yaml"
    script:
        "../scripts/unpack_stack.py"
