"""The company's people, and their Identity Center users and groups as an IdP sync leaves them."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.seed_context import Seeding
from sandbox.seed_manifest import SeedManifest

EMAIL_DOMAIN = "example.com"

# The people of the company: IAM user "first.last", identity-store user "first.last@example.com".
_PEOPLE: tuple[tuple[str, str], ...] = (
    ("Jane", "Doe"),
    ("John", "Smith"),
    ("Priya", "Patel"),
    ("Li", "Wei"),
    ("Carlos", "Garcia"),
    ("Fatima", "Khan"),
    ("Oliver", "Brown"),
    ("Sofia", "Rossi"),
    ("Ahmed", "Hassan"),
    ("Emma", "Wilson"),
    ("Lucas", "Martin"),
    ("Yuki", "Tanaka"),
    ("Noah", "Johnson"),
    ("Mia", "Schmidt"),
    ("Olga", "Ivanova"),
    ("Kwame", "Mensah"),
)
_MORE_FIRST = ("Ana", "Ben", "Chen", "Dara", "Eli", "Femi", "Gita", "Hugo", "Ines", "Jonas")
_MORE_LAST = ("Novak", "Okafor", "Silva", "Berg", "Moreau", "Haddad", "Kowalski", "Lind")

# An IAM human with no identity-store user: the inventory must report him unmatched.
UNMATCHED_HUMAN = ("Victor", "Stone")
# IAM user "alex.kim" carries no email tag, and two identity-store users share the display
# name "Alex Kim" and the local part "alex.kim": matching him must be reported ambiguous.
AMBIGUOUS_IAM_USER = "alex.kim"
AMBIGUOUS_IDENTITIES = ("alex.kim@example.com", "alex.kim@contractors.example.com")
IDC_GROUPS = ("platform-admins", "developers", "security-auditors", "data-analysts")


@dataclass
class Person:
    first: str
    last: str

    @property
    def login(self) -> str:
        return f"{self.first}.{self.last}".lower()

    @property
    def email(self) -> str:
        return f"{self.login}@{EMAIL_DOMAIN}"

    @property
    def display(self) -> str:
        return f"{self.first} {self.last}"


def company_people(count: int) -> list[Person]:
    """The company's people: the named ones, then made-up ones until there are ``count``."""
    found = [Person(f, last) for f, last in _PEOPLE]
    for first in _MORE_FIRST:
        for last in _MORE_LAST:
            if len(found) >= count:
                return found
            found.append(Person(first, last))
    n = 2
    while len(found) < count:  # very large sandboxes: numbered people
        found.append(Person("User", f"Number{n:05d}"))
        n += 1
    return found


def seed_identity_store(seeding: Seeding, manifest: SeedManifest, people: list[Person]) -> None:
    """One identity-store user per person (and the ambiguous pair), in the IdP's groups."""
    store = seeding.client("identitystore")
    sid = manifest.identity_store_id
    identities: list[tuple[str, str, str, str]] = [
        (p.email, p.display, p.first, p.last) for p in people
    ]
    identities += [(email, "Alex Kim", "Alex", "Kim") for email in AMBIGUOUS_IDENTITIES]
    user_ids: dict[str, str] = {}
    for user_name, display, given, family in identities:
        # As an IdP (SCIM) sync leaves them: UserName is the email address.
        user_id = store.create_user(
            IdentityStoreId=sid,
            UserName=user_name,
            DisplayName=display,
            Name={"GivenName": given, "FamilyName": family, "Formatted": display},
            Emails=[{"Value": user_name, "Type": "work", "Primary": True}],
        )["UserId"]
        user_ids[user_name] = user_id
        manifest.identity_users.append(
            {"user_name": user_name, "display_name": display, "user_id": user_id}
        )
    names = sorted(user_ids)
    for group in IDC_GROUPS:
        group_id = store.create_group(
            IdentityStoreId=sid, DisplayName=group, Description=f"IdP group {group}"
        )["GroupId"]
        members = sorted(seeding.rng.sample(names, k=max(1, len(names) // 3)))
        for member in members:
            store.create_group_membership(
                IdentityStoreId=sid, GroupId=group_id, MemberId={"UserId": user_ids[member]}
            )
        manifest.identity_groups[group] = members
    manifest.unmatched_humans = [f"{UNMATCHED_HUMAN[0]}.{UNMATCHED_HUMAN[1]}".lower()]
    manifest.ambiguous_humans = {AMBIGUOUS_IAM_USER: list(AMBIGUOUS_IDENTITIES)}
