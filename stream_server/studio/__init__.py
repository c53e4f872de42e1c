"""The Studio: train a swap model on the user's own faces from the browser, while the server keeps serving.

Uploads (with a consent record) become jobs under `--studio DIR`; one job at a time runs the project's own
`extract`, `train faces` and `export` commands in a child process (the server never imports torch); finished
models are handed to the server's catalog. Modules, in the order a job meets them:

- `config`: StudioConfig / StudioRecipe (built once from ServerConfig)
- `jobs`: the Job record, its states and the consent record
- `store`: DIR/<job>/ on disk (job.json written atomically, uploads, work folders, models)
- `upload`: the multipart upload, streamed to disk under a size limit, each file probed
- `runner`: the child-process steps of one job, their progress files, cancellation
- `progress`: reading a running job's progress from its files (extract state, losses, checkpoint, preview)
- `service`: StudioService, the queue and the worker, restart survival, change notifications
- `api`: the HTTP routes (`install(app, service)`)
"""
