"""``farmstand bench``: the real server, driven over HTTP, measured against the database's limit.

Modules: ``cli`` (the command), ``plan`` (what runs, sized before anything starts),
``servers`` (the processes it starts and always stops), ``dataset`` (the seeded data),
``load`` (the load process), ``http`` (a lean HTTP/1.1 and SSE client on raw sockets),
``peers`` (SMTP, SMS and Web Push peers), ``floor`` (the raw-driver floor), ``phases`` and
``runner`` (the run itself), ``report`` (table, JSON, plot). See docs/benchmarks.md.
"""
