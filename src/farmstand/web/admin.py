"""The admin console's door: its pages (``/admin...``, next to their domains in
``orders/admin_views.py`` and ``notifications/admin_views.py``) are for admins only.

Anyone else signed in gets the same not-found page as for a page that does not exist, so a
farmer or a customer does not learn the console is there; a signed-out visitor is sent to
sign in, as on every page. Declare ``AdminOnly`` before ``CsrfChecked`` in a POST route's
dependencies, so a refused role is a 404 whatever its form carries.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from farmstand.accounts.principal import Principal
from farmstand.accounts.roles import Role
from farmstand.errors import NotFound
from farmstand.web.pages import PageUser


class ConsoleNotFound(NotFound):
    message = "There is no such page here."


async def admin_page_user(user: PageUser) -> Principal:
    if user.role is not Role.ADMIN:
        raise ConsoleNotFound()
    return user


AdminPageUser = Annotated[Principal, Depends(admin_page_user)]
AdminOnly = Depends(admin_page_user)
