"""The web interface: server-rendered pages (Jinja2) with small plain JavaScript, no build step.

`ROUTERS` lists the routers `pacsd.web.app` includes: login, browsing, viewer, scan sheets, actions, retrieve
from a remote PACS, status and /metrics, the audit trail, the forwarding queue.
"""

from pacsd.web.ui import actions, audit, corrections, login, pages, queue, remote, sheets, status, viewer

ROUTERS = [login.router, pages.router, sheets.router, viewer.router, actions.router, corrections.router,
           remote.router, status.router, audit.router, queue.router]
