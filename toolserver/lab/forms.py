from django import forms

from toolserver.lab import faults


class FaultForm(forms.Form):
    """Set (or, with mode "none", clear) one backend's fault from the lab admin page."""

    backend = forms.ChoiceField(choices=[(name, name) for name in faults.BACKENDS], widget=forms.HiddenInput)
    mode = forms.ChoiceField(choices=[(mode, mode) for mode in faults.MODES])
    delay_ms = forms.IntegerField(
        required=False, min_value=0, max_value=faults.MAX_DELAY_MS, help_text="timeout and slow; default 30000 and 3000"
    )
    retry_after_s = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=faults.MAX_RETRY_AFTER_S,
        help_text=f"rate_limit; default {faults.DEFAULT_RETRY_AFTER_S}",
    )
    remaining = forms.IntegerField(required=False, min_value=1, help_text="requests; empty: until cleared")

    def save(self):
        data = self.cleaned_data
        return faults.inject(
            data["backend"],
            data["mode"],
            delay_ms=data["delay_ms"],
            retry_after_s=data["retry_after_s"],
            remaining=data["remaining"],
        )
