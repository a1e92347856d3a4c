import pytest

REASON = "Signed in from a Tor exit after MFA fatigue; password phished."


def test_a_user_has_the_documented_shape(estate, lab):
    response = lab.get("identity/users/j.doe", "identity")
    assert response.status_code == 200
    user = response.json()
    assert set(user) == {
        "username",
        "display_name",
        "email",
        "department",
        "title",
        "privileged",
        "disabled",
        "mfa",
        "last_login",
    }
    assert (user["username"], user["department"], user["disabled"]) == ("j.doe", "finance", False)
    assert user["last_login"].endswith("Z")


def test_privileged_accounts_say_so(estate, lab):
    assert lab.get("identity/users/adm.r.singh", "identity").json()["privileged"] is True
    assert lab.get("identity/users/m.lee", "identity").json()["privileged"] is False


def test_an_unknown_user_is_404(estate, lab):
    response = lab.get("identity/users/nobody", "identity")
    assert response.status_code == 404 and response.json() == {"error": "not_found", "target": "nobody"}


def test_disable_then_enable(estate, lab):
    disabled = lab.post("identity/users/j.doe/disable", "identity", {"reason": REASON}).json()
    assert disabled["username"] == "j.doe" and disabled["disabled"] is True and disabled["already"] is False
    assert disabled["action_id"].startswith("DIS-")
    assert lab.get("identity/users/j.doe", "identity").json()["disabled"] is True
    assert lab.post("identity/users/j.doe/disable", "identity", {"reason": REASON}).json()["already"] is True

    enabled = lab.post("identity/users/j.doe/enable", "identity", {"reason": REASON}).json()
    assert enabled == {"username": "j.doe", "disabled": False, "already": False, "action_id": enabled["action_id"]}
    assert lab.post("identity/users/j.doe/enable", "identity", {"reason": REASON}).json()["already"] is True


@pytest.mark.parametrize("action", ["disable", "enable"])
def test_account_writes_need_a_reason_and_a_known_user(estate, lab, action):
    assert lab.post(f"identity/users/j.doe/{action}", "identity", {}).status_code == 400
    assert lab.post(f"identity/users/nobody/{action}", "identity", {"reason": REASON}).status_code == 404
