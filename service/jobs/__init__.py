"""Video jobs that outlive a process and spread over many: the queue on huey, job records with
leases, the results directory, the workers and the sweeper.

| module | what |
|---|---|
| ``records`` | ``JobRecord`` (state, progress, lease) and its transitions, as pure functions |
| ``store`` | ``JobStore``; the embedded one on SQLite |
| ``redis_store`` | the job store on Redis (the one module importing ``redis``) |
| ``queue`` | ``JobQueue``: job ids waiting for a worker, on huey (SQLite or Redis) |
| ``files`` | ``JobFiles``: the results directory; outputs renamed into place whole |
| ``backend`` | the store, queue and files the settings name |
| ``worker`` | ``VideoWorker``: claims, runs, renews its lease, publishes |
| ``sweeper`` | expiry; jobs of dead workers and lost messages queued again; orphan files |

docs/jobs.md tells the whole story."""
