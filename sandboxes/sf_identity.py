"""Who-am-I answers of the Salesforce sandbox: identity URL, OpenID Connect userinfo, SOAP login.

Shapes follow Salesforce's public pages: "Identity URLs" (help.salesforce.com,
xcloud.remoteaccess_using_openid.htm), "UserInfo Endpoint" (remoteaccess_using_userinfo_endpoint.htm)
and the SOAP API's `login()` / `LoginResult` / `GetUserInfoResult` (api.meta sforce_api_calls_login.htm,
sforce_api_calls_getuserinfo_getuserinforesult.htm). Values that only a real org knows (photos, profile
ids, locale) are fixed demo values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape, unescape
from typing import Any

SOAP_NS = "urn:partner.soap.sforce.com"
_PLACEHOLDER_VERSION = "{version}"


@dataclass(frozen=True)
class OrgUser:
    """The facts about one user of the org that identity answers repeat."""

    org_id: str
    org_name: str
    user_id: str
    username: str
    email: str
    full_name: str
    active: bool
    last_modified: str
    currency: str = "EUR"
    time_zone: str = "Europe/Berlin"
    locale: str = "en_US"
    language: str = "en_US"
    profile_id: str = "00e5g000000SANDAAA"

    @property
    def first_name(self) -> str:
        """Given name: everything before the last space of the full name."""
        return self.full_name.rsplit(" ", 1)[0] if " " in self.full_name else ""

    @property
    def last_name(self) -> str:
        """Family name: the last word of the full name."""
        return self.full_name.rsplit(" ", 1)[-1]


def _api_urls(instance_url: str, version: str | None) -> dict[str, str]:
    # Without `version`, Salesforce leaves the literal "{version}" in each URL (Identity URLs page).
    v = version or _PLACEHOLDER_VERSION
    data = f"{instance_url}/services/data/v{v}"
    return {
        "enterprise": f"{instance_url}/services/Soap/c/{v}/",
        "metadata": f"{instance_url}/services/Soap/m/{v}/",
        "partner": f"{instance_url}/services/Soap/u/{v}/",
        "rest": f"{data}/",
        "sobjects": f"{data}/sobjects/",
        "search": f"{data}/search/",
        "query": f"{data}/query/",
        "recent": f"{data}/recent/",
        "tooling_soap": f"{instance_url}/services/Soap/T/{v}/",
        "tooling_rest": f"{data}/tooling/",
        "profile": f"{instance_url}/{{user}}",
        "feeds": f"{data}/chatter/feeds",
        "groups": f"{data}/chatter/groups",
        "users": f"{data}/chatter/users",
        "feed_items": f"{data}/chatter/feed-items",
        "feed_elements": f"{data}/chatter/feed-elements",
        "custom_domain": instance_url,
    }


def _photos(instance_url: str, user_id: str) -> dict[str, str]:
    return {
        "picture": f"{instance_url}/profilephoto/005/F/{user_id}",
        "thumbnail": f"{instance_url}/profilephoto/005/T/{user_id}",
    }


def identity_document(
    user: OrgUser, login_url: str, instance_url: str, version: str | None
) -> dict[str, Any]:
    """The JSON an identity URL (`/id/{orgId}/{userId}`) answers."""
    urls = _api_urls(instance_url, version)
    urls["profile"] = f"{instance_url}/{user.user_id}"
    return {
        "id": f"{login_url}/id/{user.org_id}/{user.user_id}",
        "asserted_user": True,
        "user_id": user.user_id,
        "organization_id": user.org_id,
        "username": user.username,
        "nick_name": user.username.split("@")[0],
        "display_name": user.full_name,
        "email": user.email,
        "email_verified": True,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "timezone": user.time_zone,
        "photos": _photos(instance_url, user.user_id),
        "addr_street": None,
        "addr_city": None,
        "addr_state": None,
        "addr_country": None,
        "addr_zip": None,
        "mobile_phone": None,
        "mobile_phone_verified": False,
        "is_lightning_login_user": False,
        "status": {"created_date": None, "body": None},
        "urls": urls,
        "active": user.active,
        "user_type": "STANDARD",
        "language": user.language,
        "locale": user.locale,
        "utcOffset": 3600000,
        "last_modified_date": user.last_modified,
        "is_app_installed": True,
    }


def userinfo_document(user: OrgUser, login_url: str, instance_url: str) -> dict[str, Any]:
    """The JSON `GET /services/oauth2/userinfo` answers (OpenID Connect claims plus Salesforce's)."""
    urls = _api_urls(instance_url, None)
    urls["profile"] = f"{instance_url}/{user.user_id}"
    return {
        "sub": f"{login_url}/id/{user.org_id}/{user.user_id}",
        "user_id": user.user_id,
        "organization_id": user.org_id,
        "preferred_username": user.username,
        "nickname": user.username.split("@")[0],
        "name": user.full_name,
        "email": user.email,
        "email_verified": True,
        "given_name": user.first_name,
        "family_name": user.last_name,
        "zoneinfo": user.time_zone,
        "photos": _photos(instance_url, user.user_id),
        "profile": f"{instance_url}/{user.user_id}",
        "picture": _photos(instance_url, user.user_id)["picture"],
        "address": {},
        "is_salesforce_integration_user": False,
        "urls": urls,
        "active": user.active,
        "user_type": "STANDARD",
        "language": user.language,
        "locale": user.locale,
        "utcOffset": 3600000,
        "updated_at": user.last_modified,
        "is_app_installed": True,
    }


def soap_credentials(envelope: str) -> tuple[str, str] | None:
    """Username and password of a SOAP `login` call, whatever prefix the client gave the elements.

    simple-salesforce writes `<n1:username>` under `xmlns:n1="urn:partner.soap.sforce.com"`; jsforce
    writes `<login xmlns="urn:partner.soap.sforce.com"><username>`: both are the same XML.
    """
    found = []
    for name in ("username", "password"):
        match = re.search(
            rf"<(?:[A-Za-z_][\w.-]*:)?{name}(?:\s[^>]*)?>(.*?)</(?:[A-Za-z_][\w.-]*:)?{name}\s*>",
            envelope,
            re.S,
        )
        if match is None:
            return None
        found.append(unescape(match.group(1)))
    return found[0], found[1]


def soap_login_result(user: OrgUser, server_url: str, session_id: str, session_seconds: int) -> str:
    """A partner-API `loginResponse` envelope with the full `userInfo` block."""
    info = {
        "accessibilityMode": "false",
        "chatterExternal": "false",
        "currencySymbol": "€",
        "orgAttachmentFileSizeLimit": "5242880",
        "orgDefaultCurrencyIsoCode": user.currency,
        "orgDefaultCurrencyLocale": "de_DE",
        "orgDisallowHtmlAttachments": "false",
        "orgHasPersonAccounts": "false",
        "organizationId": user.org_id,
        "organizationMultiCurrency": "true",
        "organizationName": user.org_name,
        "profileId": user.profile_id,
        "roleId": None,
        "sessionSecondsValid": str(session_seconds),
        "userDefaultCurrencyIsoCode": None,
        "userEmail": user.email,
        "userFullName": user.full_name,
        "userId": user.user_id,
        "userLanguage": user.language,
        "userLocale": user.locale,
        "userName": user.username,
        "userTimeZone": user.time_zone,
        "userType": "Standard",
        "userUiSkin": "Theme3",
    }
    info_xml = "".join(
        f'<{key} xsi:nil="true"/>' if value is None else f"<{key}>{escape(value)}</{key}>"
        for key, value in info.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns="{SOAP_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>{escape(server_url.replace('/Soap/u/', '/Soap/m/'))}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
        f"<serverUrl>{escape(server_url)}</serverUrl><sessionId>{escape(session_id)}</sessionId>"
        f"<userId>{user.user_id}</userId><userInfo>{info_xml}</userInfo>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )


SOAP_LOGIN_FAULT = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
    'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:sf="urn:fault.partner.soap.sforce.com" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>'
    "<faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username, "
    "password, security token; or user locked out.</faultstring><detail>"
    '<sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>'
    "<sf:exceptionMessage>Invalid username, password, security token; or user locked "
    "out.</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault>"
    "</soapenv:Body></soapenv:Envelope>"
)
