# Fetch the stacks into resources/stacks/ and unpack them into normalised slice arrays,
# one folder per data source (cellseg.datasets), shared by the experiments that use it.


# The sizes and modification times of a local source's files are a param, so a file
# replaced under the same name is fetched again and what depends on it reruns; a source
# that is gone keeps the identity it was fetched with (the fetched copy stands in for it).
rule fetch_stack:
    output:
        stack=FETCHED.format(stack_id="{stack_id}", suffix="npy"),
        record=FETCHED.format(stack_id="{stack_id}", suffix="json"),
    log:
        "resources/logs/fetch_stack/{stack_id}.log",
    benchmark:
        "resources/benchmarks/fetch_stack/{stack_id}.tsv"
    conda:
        "../envs/cellseg.yaml"
    params:
        spec=lambda w: FETCHES[w.stack_id],
        identity=lambda w: local_identity(
            FETCHES[w.stack_id]["sources"],
            FETCHED.format(stack_id=w.stack_id, suffix="json"),
        ),
        timeout=config["data"]["download_timeout"],
        retries=config["data"]["download_retries"],
    script:
        "../scripts/fetch_stack.py"


rule unpack_training_stack:
    input:
        images=lambda w: fetched(w.unpacked, "images", "npy"),
        images_record=lambda w: fetched(w.unpacked, "images", "json"),
        labels=lambda w: fetched(w.unpacked, "labels", "npy"),
        labels_record=lambda w: fetched(w.unpacked, "labels", "json"),
    output:
        images="resources/unpacked/{unpacked}/train_images.npy",
        labels="resources/unpacked/{unpacked}/train_labels.npy",
        manifest="resources/unpacked/{unpacked}/train_slices.tsv",
        record="resources/unpacked/{unpacked}/train_images.json",
    log:
        "resources/logs/unpack/{unpacked}.log",
    conda:
        "../envs/cellseg.yaml"
    params:
        options=lambda w: UNPACKS[w.unpacked]["options"],
    script:
        "../scripts/unpack_stack.py"


rule unpack_test_stack:
    input:
        images=lambda w: fetched(w.unpacked, "images", "npy"),
        images_record=lambda w: fetched(w.unpacked, "images", "json"),
    output:
        images="resources/unpacked/{unpacked}/test_images.npy",
        manifest="resources/unpacked/{unpacked}/test_slices.tsv",
        record="resources/unpacked/{unpacked}/test_images.json",
    log:
        "resources/logs/unpack/{unpacked}.log",
    conda:
        "../envs/cellseg.yaml"
    params:
        options=lambda w: UNPACKS[w.unpacked]["options"],
    script:
        "../scripts/unpack_stack.py"
