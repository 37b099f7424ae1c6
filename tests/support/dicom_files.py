"""Synthetic DICOM Part 10 files for tests, written by pydicom itself: a small CT slice with the key tags the
timeline shows, and variants (truncated, without a SOP Instance UID)."""

from __future__ import annotations

import io

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def ct_slice(*, patient_name: str = "Zhang^Wei", patient_id: str = "A-1", sop_instance_uid: str | None = None,
             study_instance_uid: str | None = None, modality: str = "CT", body_part: str = "CHEST",
             study_description: str = "Chest CT", study_date: str = "20251201", pixels: int = 64) -> bytes:
    """A CT image instance of `pixels` x `pixels` 16-bit samples (8 KiB at the default)."""
    sop = sop_instance_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study_instance_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientSex = "M"
    ds.Modality = modality
    ds.BodyPartExamined = body_part
    ds.StudyDescription = study_description
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.InstitutionName = "Clinic A"
    ds.Rows = ds.Columns = pixels
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(range(256)) * (pixels * pixels * 2 // 256)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def without_sop_instance_uid() -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.PatientName = "No^Instance"
    ds.Modality = "CT"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
